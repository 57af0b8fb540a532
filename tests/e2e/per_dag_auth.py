"""An auth manager with per-DAG permissions, for the job tab's end-to-end test.

Airflow's SimpleAuthManager knows roles only (a viewer may read every DAG). This one is
the SimpleAuthManager with one addition: users named in ``PYWREN_TEST_DAG_ACL`` (JSON,
``{"user": ["dag_id", ...]}``) may touch those DAGs only, the way the FAB or Keycloak
auth managers restrict a role to some DAGs. The api-server imports it by class path
(``AIRFLOW__CORE__AUTH_MANAGER=per_dag_auth.PerDagAuthManager``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

ACL_ENV = "PYWREN_TEST_DAG_ACL"


class PerDagAuthManager(SimpleAuthManager):
    """SimpleAuthManager whose users may be limited to some DAGs."""

    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        allowed = json.loads(os.environ.get(ACL_ENV, "{}")).get(user.username)
        if allowed is not None and (details is None or details.id not in allowed):
            return False
        return bool(
            super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
        )

"""The ``rabbitmq`` parameter Lithops injects, end to end on a real broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from payloads.functions import publish_to_queue
from rabbitmq_server import RabbitMQServer

from pywren_deferrable import PyWrenMapOperator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker() -> Iterator[RabbitMQServer]:
    server = RabbitMQServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_functions_taking_rabbitmq_get_a_connection(lithops_conn: str, broker: RabbitMQServer) -> None:
    import pika

    op = PyWrenMapOperator(
        task_id="t",
        map_function=publish_to_queue,
        map_iterdata=[1, 2, 3],
        extra_params={"queue": "pywren-results"},
        pywren_executor_config={"rabbitmq": {"amqp_url": broker.amqp_url}},
        deferrable=False,
    )
    assert op.execute({}) == [1, 2, 3]
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        channel = connection.channel()
        bodies = []
        while True:
            _method, _props, body = channel.basic_get("pywren-results", auto_ack=True)
            if body is None:
                break
            bodies.append(body.decode())
    finally:
        connection.close()
    assert sorted(bodies) == ["10", "20", "30"]


def test_rabbitmq_is_never_bound_to_an_input() -> None:
    with pytest.raises((TypeError, ValueError), match="rabbitmq"):
        PyWrenMapOperator(
            task_id="t",
            map_function=publish_to_queue,
            map_iterdata=[{"x": 1, "queue": "q", "rabbitmq": "no"}],
        )

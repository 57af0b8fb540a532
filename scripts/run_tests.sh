#!/usr/bin/env bash
# `make test`'s suites, side by side: most of each suite's time is spent waiting on the
# processes, servers and polls it started, so on a 2-core machine three suites at once take
# little more than the longest. Each gets a TMPDIR of its own (Lithops' localhost backend
# re-copies itself into $TMPDIR/lithops-<user>/ per executor, under the feet of another
# suite's jobs). Their output is printed whole, one suite after the other, and the run fails
# if any suite failed.
#
#   scripts/run_tests.sh NAME 'COMMAND' [NAME 'COMMAND' ...]
set -uo pipefail
logs=$(mktemp -d -t pywren-test-suites-XXXXXX)
names=()
while [ $# -ge 2 ]; do
    name=$1 command=$2
    shift 2
    names+=("$name")
    (
        export TMPDIR
        TMPDIR=$(mktemp -d -t "pywren-$name-XXXXXX")
        start=$(date +%s)
        bash -c "$command" >"$logs/$name.log" 2>&1
        echo $? >"$logs/$name.rc"
        echo $(($(date +%s) - start)) >"$logs/$name.seconds"
    ) &
done
wait
status=0
for name in "${names[@]}"; do
    rc=$(cat "$logs/$name.rc")
    echo "================ suite $name: exit $rc in $(cat "$logs/$name.seconds")s ================"
    cat "$logs/$name.log"
    [ "$rc" = 0 ] || status=1
done
for name in "${names[@]}"; do
    echo "suite $name: exit $(cat "$logs/$name.rc") in $(cat "$logs/$name.seconds")s"
done
exit $status

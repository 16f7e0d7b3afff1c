#!/bin/sh
# loop.sh NAME CURL-ARGS...: request with curl, one at a time, until /run/e2e/NAME.stop exists.
# One line per request in /run/e2e/NAME.log:
#   ok         answered 200
#   refused    connection refused (curl exit 7): nothing was listening
#   reset-ok   the connection was reset or closed before the answer (curl 52/56: the process
#              serving it was killed) and the same request, sent again, was answered 200
#   lost ...   reset, and the retry failed too
#   fail ...   any other error or status
# Runs inside the test container (systemd-run --unit=e2e-loop-NAME).
name=$1
shift
out=/run/e2e/$name.log
: >"$out"
while [ ! -e "/run/e2e/$name.stop" ]; do
	code=$(curl -sS -m 30 -o /dev/null -w '%{http_code}' "$@" 2>>"/run/e2e/$name.err")
	rc=$?
	if [ $rc -eq 0 ] && [ "$code" = 200 ]; then
		echo ok
	elif [ $rc -eq 7 ]; then
		echo refused
	elif [ $rc -eq 52 ] || [ $rc -eq 56 ]; then
		code=$(curl -sS -m 30 -o /dev/null -w '%{http_code}' "$@" 2>>"/run/e2e/$name.err")
		rc=$?
		if [ $rc -eq 0 ] && [ "$code" = 200 ]; then echo reset-ok; else echo "lost rc=$rc code=$code"; fi
	else
		echo "fail rc=$rc code=$code"
	fi >>"$out"
done

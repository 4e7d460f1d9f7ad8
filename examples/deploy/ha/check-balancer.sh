#!/bin/sh
# keepalived's check of this host's failover-proxy-apiserver: exit 0 while it is
# ready — it accepts clients and at least one apiserver passes its check — and
# non-zero otherwise (503 from /readyz, or no answer within 2 s). The status
# endpoint is the "status" address of /etc/failover-proxy/apiserver-balancer.json.
exec curl --silent --fail --max-time 2 --output /dev/null "${BALANCER_READYZ_URL:-http://127.0.0.1:9090/readyz}"

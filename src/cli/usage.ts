/**
 * The balancer's `--help` text: every flag, its value and its default.
 *
 * @module
 */

/**
 * `--help` text, naming the program as it was invoked: `failover-proxy-apiserver`
 * through the package's bin, `apiserver-balancer` for the script.
 */
export function usage(command = 'apiserver-balancer'): string {
  return `Usage: ${command} --backend HOST:PORT [--backend HOST:PORT ...] [options]

TCP (TLS passthrough) balancer for kube-apiservers: active health checks, and
every connection pinned to a backend is torn down the moment it is marked down.

  --listen HOST:PORT         address to accept clients on (default 0.0.0.0:6443)
  --backend [NAME=]HOST:PORT a backend; repeat for each (at least one)
  --check CHECK              https:/PATH (default https:/readyz) | http:/PATH | tls | tcp
  --ca FILE                  CA bundle the check trusts (https, tls)
  --cert FILE --key FILE     client certificate for the check (https, tls)
  --insecure                 do not verify the backends' certificates in the check
  --servername NAME          SNI and verified name for the check (default: IP SANs)
  --interval MS              time between checks (default 1000)
  --timeout MS               time a check may take, at most the interval (default 1000)
  --rise N                   passes in a row to mark a backend up (default 2)
  --fall N                   failures in a row to mark it down (default 2)
  --strategy NAME            least-connections (default) | round-robin | random-two | hash
  --connect-timeout MS       time to connect to a backend (default 3000)
  --retries N                other backends to try when a connect fails (default 2)
  --queue-timeout MS         how long a client waits while no backend is up (default 10000)
  --status HOST:PORT         serve /stats, /metrics, /livez, /readyz, the admin API and the status page
                             (PORT alone: on 127.0.0.1)
  --drain-timeout MS         on SIGTERM/SIGINT, reload or removal, time open connections get (default 5000)
  --admin-token-file FILE    bearer token that unlocks the admin API's changes (default: read-only)
  --slow-start MS            a returning backend's share ramps up over this time; 0: off (default 10000)
  --rebalance-rate N         connections moved per second back to a returning backend (default 4)
  --rebalance-tolerance F    how far from its share (fraction) a backend counts as balanced (default 0.2)
  --no-rebalance             leave connections where they are when a backend returns
  --write-stall-timeout MS   tear down a connection whose writes made no progress this long; 0: off
                             (default: interval x fall + timeout + 5000)
  --leaving-grace MS         a backend whose /readyz reports [-]shutdown takes no new clients and keeps
                             its connections this long for itself to close; what is left is then
                             moved at the rebalance rate (default 90000)
  --all-down POLICY          while no backend is up: queue (default) | fail-open (use the unhealthy ones)
  --workers N|auto           processes accepting clients (default 1; auto: one per CPU)
  --max-clients N|auto       clients held at most, all workers together; more are refused at accept
                             (default auto: (descriptor limit - max(64, 5%)) / 2 per process)
  --admin-socket PATH        also serve the status endpoint and the admin API on this Unix socket
                             (mode 0600; changes need no token there)
  --status-allowed-hosts H,H host names the status listener answers besides IP addresses and
                             localhost (DNS rebinding guard; /livez and /readyz answer any Host)
  --access-log PATH|-        one JSON line per closed connection, appended to PATH or on stdout (default: off)
  --discover SOURCE          more backends from dns:NAME:PORT (A records), srv:_SERVICE._PROTO.NAME,
                             or kubernetes (the EndpointSlices of default/kubernetes); repeat for each;
                             combined with --backend, which are always kept
  --dns-server HOST[:PORT]   resolver for the dns: and srv: sources (default: the system's)
  --kubeconfig FILE          credentials for --discover kubernetes and --intent (default: in-cluster)
  --discovery-state FILE     keep the discovered lists here across restarts (never replaces --backend)
  --intent NAMESPACE/NAME    apply the drain/maintenance declared in this ConfigMap (default name
                             kube-system/failover-proxy-intent when given as "default")
  --config FILE.json         the same settings as JSON (keys are the flag names); flags win;
                             SIGHUP re-reads it
  --help                     this text
  --version                  print the version and exit
`;
}

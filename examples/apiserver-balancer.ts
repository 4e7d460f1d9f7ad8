/**
 * The reference balancer for kube-apiservers, run from a clone: TLS
 * passthrough, active health checks, and every connection pinned to a backend
 * torn down the moment the backend is marked down. See
 * docs/apiserver-balancer.md.
 *
 * ```sh
 * npx tsx examples/apiserver-balancer.ts --listen 0.0.0.0:6443 \
 *   --backend 10.0.0.1:6443 --backend 10.0.0.2:6443 --backend 10.0.0.3:6443 \
 *   --ca /etc/kubernetes/pki/ca.crt --status 127.0.0.1:9090
 * ```
 *
 * The program is src/cli/ (entry src/cli/apiserver-balancer.ts); the package
 * ships it built as the `failover-proxy-apiserver` bin. This file only runs
 * it, so a clone and an installed package start the same code.
 *
 * @module
 */
import '../src/cli/apiserver-balancer.js';

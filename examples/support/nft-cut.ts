/**
 * The kernel-level silent cut used by the partition test and the failover
 * bench: an nftables table that drops every packet to and from one address,
 * the equivalent of that host losing its network without a FIN or an RST.
 * Apply it only inside a network namespace of your own (`unshare -n`).
 *
 * @module
 */

/** The table the ruleset creates; `nft delete table inet <name>` lifts the cut. */
export const NFT_CUT_TABLE = 'cut';

/**
 * An `nft -f -` ruleset dropping everything to and from `host`. On loopback a
 * packet crosses both the input and the output hook, so both drop: nothing
 * leaks either way.
 */
export function nftCutRuleset(host: string): string {
  return `
table inet ${NFT_CUT_TABLE} {
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr ${host} drop
    ip daddr ${host} drop
  }
  chain output {
    type filter hook output priority 0; policy accept;
    ip saddr ${host} drop
    ip daddr ${host} drop
  }
}
`;
}

/**
 * The command line of `failover-proxy-verify`: its options, their defaults,
 * and their validation in one place. A bad flag is a {@link VerifyUsageError}
 * (code `ERR_VERIFY_USAGE`), printed on one line with exit code 2.
 *
 * @module
 */

/** The faults the scenario can inject into one backend, in the order they run. */
export const faultNames = ['cut', 'rst', 'blackhole'] as const;
/** One fault: see docs/verify.md. */
export type FaultName = (typeof faultNames)[number];

/** Where the faults come from. */
export type VerifyMode = 'auto' | 'netns' | 'proxy';

/** What a run does, once parsed and validated. */
export interface VerifyOptions {
  /** The balancer's command line, with placeholders (see template.ts). */
  readonly balancer: string;
  /** A config file with the same placeholders, rendered into the run's directory as `{config}`. */
  readonly configTemplate: string | undefined;
  /** Watch streams opened through the balancer. @default 300 (30 with `--quick`) */
  readonly streams: number;
  /** The faults to run, each followed by its heal. @default every one */
  readonly faults: readonly FaultName[];
  /** `netns`: a private network namespace and nftables (root); `proxy`: a fault proxy before each backend; `auto`: netns when it can. @default 'auto' */
  readonly mode: VerifyMode;
  /** Print the result as JSON on stdout instead of a table. @default false */
  readonly json: boolean;
  /** Smaller and shorter (for tests and a first try). @default false */
  readonly quick: boolean;
  /** How long after a fault a stream may take to resume before it counts as stuck or lost, in ms. @default 15000 (8000 with `--quick`) */
  readonly windowMs: number;
  /** How long after the heal to wait for the streams to spread over every backend again, in ms. @default 20000 (4000 with `--quick`) */
  readonly settleMs: number;
  /** How long the balancer may take to accept connections and spread streams, in ms. @default 30000 */
  readonly readyTimeoutMs: number;
  /** Exit 4 when a stream was stuck or lost. @default false */
  readonly strict: boolean;
  /** Mirror the balancer's output on stderr. @default false */
  readonly verbose: boolean;
}

/** A bad command line. */
export class VerifyUsageError extends Error {
  readonly code = 'ERR_VERIFY_USAGE';
  constructor(message: string) {
    super(message);
    this.name = 'VerifyUsageError';
  }
}

/** The result of parsing: a run, or a request for help or the version. */
export type ParsedVerifyArgs = { readonly kind: 'help' } | { readonly kind: 'version' } | { readonly kind: 'run'; readonly options: VerifyOptions };

/** Usage text. */
export function verifyUsage(name: string): string {
  return `Usage: ${name} --balancer 'COMMAND' [options]

Runs the silent-partition scenario against a balancer you give: three TLS
apiserver-like backends, N watch streams through the balancer, then for each
fault (a silent cut, an RST, a blackhole) on one backend: how long the streams
on it take to resume on a live backend, how many stay stuck or are lost, and
how the streams spread again after the heal.

The balancer command runs with sh -c, in the foreground (do not let it
daemonize). Placeholders, in the command and in --config-template:
  {listen}  {listen.host}  {listen.port}   where it must listen
  {backends:FORMAT}   FORMAT once per backend, NAME, HOST and PORT replaced
                      (joined by a space in the command, a newline in a file)
  {ca}      the backends' CA certificate (PEM), for HTTPS checks
  {dir}     the run's temporary directory (pid files, logs)
  {config}  the rendered --config-template

Options:
  --balancer CMD         the balancer's command line (required)
  --config-template F    a config file with placeholders, rendered as {config}
  --streams N            watch streams (default 300, 30 with --quick)
  --faults LIST          comma-separated, of ${faultNames.join(', ')} (default: all)
  --mode MODE            netns | proxy | auto (default auto: netns as root with
                         unshare and nft, else the fault proxy)
  --window MS            time a stream may take to resume (default 15000)
  --settle MS            time to spread again after the heal (default 20000)
  --ready-timeout MS     time for the balancer to start serving (default 30000)
  --quick                30 streams, short windows
  --json                 the result as JSON on stdout
  --strict               exit 4 when any stream was stuck or lost
  --verbose              mirror the balancer's output on stderr
  --help, --version

Exit codes: 0 the scenario ran, 1 it could not, 2 bad usage, 4 --strict and a
stream stuck or lost, 130/143 interrupted. See docs/verify.md.
`;
}

function integer(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new VerifyUsageError(`Expected \`${flag}\` to be an integer ${min}..${max}, got \`${text}\``);
  }
  return n;
}

const valueFlags = new Set(['--balancer', '--config-template', '--streams', '--faults', '--mode', '--window', '--settle', '--ready-timeout']);
const booleanFlags = new Set(['--quick', '--json', '--strict', '--verbose']);

/**
 * Parses and validates `argv` (without `node` and the script).
 *
 * @example
 * ```ts
 * parseVerifyArgs(['--balancer', 'haproxy -db -f {config}', '--config-template', 'haproxy.cfg', '--quick']);
 * ```
 */
export function parseVerifyArgs(argv: readonly string[]): ParsedVerifyArgs {
  if (argv.includes('--help') || argv.includes('-h')) return { kind: 'help' };
  if (argv.includes('--version')) return { kind: 'version' };
  const values = new Map<string, string>();
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const flag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    if (valueFlags.has(flag)) {
      const value = eq > 0 && arg.startsWith('--') ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined) throw new VerifyUsageError(`${flag} needs a value (see --help)`);
      if (values.has(flag)) throw new VerifyUsageError(`${flag} given twice`);
      values.set(flag, value);
    } else if (booleanFlags.has(arg)) {
      flags.add(arg);
    } else {
      throw new VerifyUsageError(`unknown argument \`${arg}\` (see --help)`);
    }
  }
  const balancer = values.get('--balancer');
  if (balancer === undefined || balancer.trim() === '') throw new VerifyUsageError('--balancer is required: the command line of the balancer to verify (see --help)');
  const quick = flags.has('--quick');
  const mode = values.get('--mode') ?? 'auto';
  if (mode !== 'auto' && mode !== 'netns' && mode !== 'proxy') throw new VerifyUsageError(`Expected \`--mode\` to be netns, proxy or auto, got \`${mode}\``);
  const faultsText = values.get('--faults');
  let faults: FaultName[] = [...faultNames];
  if (faultsText !== undefined) {
    const list = faultsText.split(',').map((f) => f.trim());
    const bad = list.filter((f) => !(faultNames as readonly string[]).includes(f));
    if (list.length === 0 || bad.length > 0 || new Set(list).size !== list.length) {
      throw new VerifyUsageError(`Expected \`--faults\` to be distinct names of ${faultNames.join(', ')}, got \`${faultsText}\``);
    }
    // Always in the canonical order: each fault's heal leaves the next a clean start.
    faults = faultNames.filter((f) => list.includes(f));
  }
  const streamsText = values.get('--streams');
  const windowText = values.get('--window');
  const settleText = values.get('--settle');
  const readyText = values.get('--ready-timeout');
  return {
    kind: 'run',
    options: Object.freeze({
      balancer,
      configTemplate: values.get('--config-template'),
      streams: streamsText === undefined ? (quick ? 30 : 300) : integer('--streams', streamsText, 3, 20_000),
      faults: Object.freeze(faults),
      mode,
      json: flags.has('--json'),
      quick,
      windowMs: windowText === undefined ? (quick ? 8000 : 15_000) : integer('--window', windowText, 500, 600_000),
      settleMs: settleText === undefined ? (quick ? 4000 : 20_000) : integer('--settle', settleText, 0, 600_000),
      readyTimeoutMs: readyText === undefined ? 30_000 : integer('--ready-timeout', readyText, 1000, 600_000),
      strict: flags.has('--strict'),
      verbose: flags.has('--verbose'),
    }),
  };
}

/**
 * Placeholders in the balancer's command line and config template (see
 * `verifyUsage()`): the one function that renders both.
 *
 * @module
 */
import { VerifyUsageError } from './options.js';

/** A backend as the balancer must be told about it. */
export interface TemplateBackend {
  readonly name: string;
  readonly host: string;
  readonly port: number;
}

/** What the placeholders stand for in one run. */
export interface TemplateValues {
  readonly listen: { readonly host: string; readonly port: number };
  readonly backends: readonly TemplateBackend[];
  readonly ca: string;
  readonly dir: string;
  readonly config: string | undefined;
}

const placeholder = /\{([a-z]+(?:\.[a-z]+)?)(?::([^{}\n]*))?\}/g;

/**
 * Renders `text`: `{listen}`, `{listen.host}`, `{listen.port}`, `{ca}`,
 * `{dir}`, `{config}` and `{backends:FORMAT}` (FORMAT once per backend with
 * the words NAME, HOST and PORT replaced, joined by `joiner`). Braces that are
 * not a placeholder (`stream {`, `${VAR}`) are left alone; an unknown
 * lower-case name is refused, so a typo does not reach the balancer.
 *
 * @example
 * ```ts
 * renderTemplate('--listen {listen} {backends:--backend HOST:PORT}', values, ' ');
 * // '--listen 127.0.0.1:6443 --backend 127.0.0.2:6443 --backend 127.0.0.3:6443 --backend 127.0.0.4:6443'
 * ```
 */
export function renderTemplate(text: string, values: TemplateValues, joiner: string): string {
  return text.replace(placeholder, (whole, name: string, format: string | undefined) => {
    if (name === 'backends') {
      const f = format ?? 'HOST:PORT';
      return values.backends.map((b) => f.replace(/\b(NAME|HOST|PORT)\b/g, (w) => (w === 'NAME' ? b.name : w === 'HOST' ? b.host : String(b.port)))).join(joiner);
    }
    if (format !== undefined) throw new VerifyUsageError(`placeholder ${whole}: only {backends:FORMAT} takes a format`);
    switch (name) {
      case 'listen':
        return `${values.listen.host}:${values.listen.port}`;
      case 'listen.host':
        return values.listen.host;
      case 'listen.port':
        return String(values.listen.port);
      case 'ca':
        return values.ca;
      case 'dir':
        return values.dir;
      case 'config':
        if (values.config === undefined) throw new VerifyUsageError('{config} needs --config-template');
        return values.config;
      default:
        throw new VerifyUsageError(`unknown placeholder ${whole} (known: {listen}, {listen.host}, {listen.port}, {backends:FORMAT}, {ca}, {dir}, {config})`);
    }
  });
}

/** Throws a {@link VerifyUsageError} now, before anything starts, if `text` has a bad placeholder. */
export function checkTemplate(text: string, hasConfig: boolean): void {
  const values: TemplateValues = {
    listen: { host: '127.0.0.1', port: 1 },
    backends: [{ name: 'b1', host: '127.0.0.1', port: 1 }],
    ca: '',
    dir: '',
    config: hasConfig ? '' : undefined,
  };
  renderTemplate(text, values, ' ');
}

/**
 * A reader for the small subset of YAML the example manifests are written in,
 * so tests can check them without a YAML dependency: block mappings and block
 * sequences by indentation, `#` comments, plain, `"double"` and `'single'`
 * quoted scalars (plain ones typed as YAML 1.2's core schema types them:
 * `true`/`false`, `null`/`~`, decimal integers and floats). Anything else —
 * flow collections, anchors, aliases, tags, block scalars, multi-line
 * scalars, several documents — is refused with an error naming the line, so
 * a manifest that leaves the subset fails its test instead of being misread.
 */

type Value = string | number | boolean | null | Value[] | { [key: string]: Value };

interface Line {
  readonly indent: number;
  readonly text: string;
  readonly number: number;
}

function fail(line: Line | undefined, why: string): never {
  throw new Error(`simple-yaml: ${line === undefined ? 'end of input' : `line ${line.number}`}: ${why}`);
}

/** Strips a comment: `#` at the start or after a space, outside quotes. */
function stripComment(text: string): string {
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"') i++;
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === '#' && (i === 0 || text[i - 1] === ' ')) {
      return text.slice(0, i).trimEnd();
    }
  }
  return text.trimEnd();
}

function scalar(raw: string, line: Line): Value {
  if (raw.startsWith('"')) {
    if (!raw.endsWith('"') || raw.length < 2) fail(line, `unterminated string ${raw}`);
    return JSON.parse(raw) as string;
  }
  if (raw.startsWith("'")) {
    if (!raw.endsWith("'") || raw.length < 2) fail(line, `unterminated string ${raw}`);
    return raw.slice(1, -1).replaceAll("''", "'");
  }
  if (/^[[\]{}&*!|>%@`]/.test(raw)) fail(line, `unsupported construct ${JSON.stringify(raw)}`);
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  if (raw === 'null' || raw === '~' || raw === '') return null;
  if (/^[-+]?\d+$/.test(raw)) return Number(raw);
  if (/^[-+]?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw)) return Number(raw);
  if (/: |:$/.test(raw)) fail(line, `a plain scalar with ": " in it: ${JSON.stringify(raw)}`);
  return raw;
}

/** `key: rest` (rest may be empty), or `undefined` when the text is no mapping entry. */
function entry(text: string): { key: string; rest: string } | undefined {
  const match = /^([A-Za-z0-9_.\-/]+):(?: +(.*))?$/.exec(text) ?? /^("(?:[^"\\]|\\.)*"):(?: +(.*))?$/.exec(text);
  if (match === null) return undefined;
  const key = match[1]!.startsWith('"') ? (JSON.parse(match[1]!) as string) : match[1]!;
  return { key, rest: match[2] ?? '' };
}

class Reader {
  #i = 0;
  constructor(readonly lines: readonly Line[]) {}

  peek(): Line | undefined {
    return this.lines[this.#i];
  }

  next(): Line {
    return this.lines[this.#i++]!;
  }

  /** The block starting at the next line, which must be indented exactly `indent`. */
  block(indent: number): Value {
    const first = this.peek();
    if (first === undefined || first.indent !== indent) fail(first, `expected a block at indent ${indent}`);
    return first.text.startsWith('- ') || first.text === '-' ? this.sequence(indent) : this.mapping(indent);
  }

  mapping(indent: number, firstText?: string, firstLine?: Line): { [key: string]: Value } {
    const out: { [key: string]: Value } = {};
    let text = firstText;
    let line = firstLine;
    for (;;) {
      if (text === undefined) {
        const next = this.peek();
        if (next === undefined || next.indent < indent) return out;
        if (next.indent > indent) fail(next, 'unexpected indentation');
        if (next.text.startsWith('- ')) return out; // a sequence at the parent's indent ends this mapping
        line = this.next();
        text = line.text;
      }
      const e = entry(text) ?? fail(line, `expected "key: value", got ${JSON.stringify(text)}`);
      if (Object.hasOwn(out, e.key)) fail(line, `duplicate key ${e.key}`);
      if (e.rest !== '') {
        out[e.key] = scalar(e.rest, line!);
      } else {
        const next = this.peek();
        if (next !== undefined && next.indent > indent) out[e.key] = this.block(next.indent);
        // YAML allows a sequence at the key's own indent.
        else if (next !== undefined && next.indent === indent && next.text.startsWith('- ')) out[e.key] = this.sequence(indent);
        else out[e.key] = null;
      }
      text = undefined;
    }
  }

  sequence(indent: number): Value[] {
    const out: Value[] = [];
    for (;;) {
      const next = this.peek();
      if (next === undefined || next.indent !== indent || !next.text.startsWith('- ')) {
        if (next !== undefined && next.indent > indent) fail(next, 'unexpected indentation');
        return out;
      }
      const line = this.next();
      const item = line.text.slice(2).trimStart();
      const itemIndent = indent + (line.text.length - item.length);
      // `- key: value` opens a mapping whose further keys line up with `key`.
      if (entry(item) !== undefined) out.push(this.mapping(itemIndent, item, line));
      else out.push(scalar(item, line));
    }
  }
}

/** Parses `text`; throws (naming the line) on anything outside the subset. */
export function parseSimpleYaml(text: string): Value {
  const lines: Line[] = [];
  for (const [i, rawLine] of text.split('\n').entries()) {
    if (rawLine.includes('\t')) fail({ indent: 0, text: rawLine, number: i + 1 }, 'a tab');
    const stripped = stripComment(rawLine);
    if (stripped.trim() === '') continue;
    const indent = stripped.length - stripped.trimStart().length;
    const line = { indent, text: stripped.trimStart(), number: i + 1 };
    if (line.text === '---' || line.text === '...') fail(line, 'document markers');
    lines.push(line);
  }
  const reader = new Reader(lines);
  if (lines.length === 0) return null;
  const value = reader.block(lines[0]!.indent);
  const rest = reader.peek();
  if (rest !== undefined) fail(rest, 'unexpected content after the document');
  return value;
}

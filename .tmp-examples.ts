import ts from 'typescript';
import { readFileSync, writeFileSync } from 'node:fs';
const apply = process.argv.includes('--apply');
const files = process.argv.slice(2).filter((a) => !a.startsWith('--'));
// Entry points: classes, constructors, exported factory functions, and these main methods.
const mainMethods = new Set(['pin', 'connect', 'place', 'attach', 'start', 'reconcile']);
for (const file of files) {
  const text = readFileSync(file, 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const drop: [number, number][] = [];
  const visit = (node: ts.Node, owner?: string) => {
    const docs = (node as { jsDoc?: ts.JSDoc[] }).jsDoc;
    if (docs) {
      for (const doc of docs) for (const tag of doc.tags ?? []) {
        if (tag.tagName.text !== 'example') continue;
        let kind = ts.SyntaxKind[node.kind];
        let name = (node as { name?: ts.Node }).name?.getText(sf) ?? '';
        const keepNames = new Set(['UpstreamPool','HealthProbe','PinnedConnection','PinnedSocket','PoolAgent','Rebalancer','WriteStallDetector','ConnectionSlot','FailoverProxyError','HashBalancer','LeastConnectionsBalancer','RandomTwoBalancer','RoundRobinBalancer','createBalancer','customCheck','httpCheck','httpsCheck','tcpCheck','tlsCheck','createHttpProxy','createUpgradeHandler','pinUpgrade','proxyHeader']);
        let keep = (ts.isClassDeclaration(node) || ts.isFunctionDeclaration(node)) && keepNames.has(name) || (ts.isMethodDeclaration(node) && mainMethods.has(name));
        // exported const arrow factories
        if (ts.isVariableStatement(node)) { name = node.declarationList.declarations[0]!.name.getText(sf); keep = false; }
        console.log(`${keep ? 'KEEP' : 'DROP'} ${file}:${sf.getLineAndCharacterOfPosition(tag.pos).line + 1} ${kind} ${owner ? owner + '.' : ''}${name}`);
        if (!keep) drop.push([tag.pos, tag.end]);
      }
    }
    ts.forEachChild(node, (c) => visit(c, ts.isClassDeclaration(node) || ts.isInterfaceDeclaration(node) ? node.name?.text : owner));
  };
  visit(sf);
  if (apply && drop.length) {
    const lines = text.split('\n');
    const kill = new Set<number>();
    for (const [pos] of drop) {
      let l = sf.getLineAndCharacterOfPosition(pos).line;
      while (!/@example/.test(lines[l]!)) l++;
      let e = l + 1;
      while (e < lines.length && !/^\s*\*\s*@\w+/.test(lines[e]!) && !/^\s*\*\//.test(lines[e]!)) e++;
      for (let i = l; i < e; i++) kill.add(i);
      // a blank ` *` line left just before, and now just before the end of the comment or a tag
      if (/^\s*\*\s*$/.test(lines[l - 1]!) && (/^\s*\*\//.test(lines[e]!) || /^\s*\*\s*@\w+/.test(lines[e]!))) kill.add(l - 1);
    }
    let out = lines.filter((_, i) => !kill.has(i));
    // `/**\n * text\n */` stays; a comment emptied to `/**\n */` is not expected
    writeFileSync(file, out.join('\n'));
  }
}

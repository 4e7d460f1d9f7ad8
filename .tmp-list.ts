import ts from 'typescript';
const program = ts.createProgram(['src/index.ts'], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, noEmit: true, types: [] });
const checker = program.getTypeChecker();
const sf = program.getSourceFile('src/index.ts')!;
const mod = checker.getSymbolAtLocation(sf)!;
const values: string[] = [], types: string[] = [];
for (const s of checker.getExportsOfModule(mod)) {
  const target = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
  const typeOnly = s.declarations?.some((d) => ts.isExportSpecifier(d) && (d.isTypeOnly || d.parent.parent.isTypeOnly));
  ((target.flags & ts.SymbolFlags.Value) && !typeOnly ? values : types).push(s.name);
}
console.log(JSON.stringify({ values: values.sort(), types: types.sort() }));

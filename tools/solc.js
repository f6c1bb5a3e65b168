// Native-solc command-line surface over solcjs (WebAssembly), for forge.
// argv: <standard-json input file or ""> <original solc arguments...>
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require(path.join(__dirname, '..', 'node_modules', 'solc'));

const [inputFile, ...args] = process.argv.slice(2);

if (args.includes('--version') || args.includes('-v')) {
  // solcjs says "0.8.x+commit.abcd.Emscripten.clang"; forge parses native's format.
  const version = solc.version().replace(/\.Emscripten\.clang$/, '.Linux.g++');
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${version}\n`);
  process.exit(0);
}

if (!args.includes('--standard-json')) {
  process.stderr.write('berth solc shim: only --version and --standard-json are supported\n');
  process.exit(2);
}

// Roots an import may be read from: --base-path, --include-path, --allow-paths.
const roots = [];
for (let i = 0; i < args.length; i++) {
  if (['--base-path', '--include-path', '--allow-paths'].includes(args[i]) && args[i + 1]) {
    for (const p of args[i + 1].split(',')) if (p) roots.push(p);
    i++;
  }
}
if (roots.length === 0) roots.push(process.cwd());

function findImports(importPath) {
  const candidates = path.isAbsolute(importPath)
    ? [importPath]
    : roots.map((root) => path.resolve(root, importPath));
  for (const candidate of candidates) {
    if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, 'utf8') };
  }
  return { error: `File not found: ${importPath}` };
}

const input = fs.readFileSync(inputFile, 'utf8');
const output = solc.compile(input, { import: findImports });
// solcjs may print progress lines starting with ">>>"; only JSON goes to forge.
const json = output.split('\n').filter((line) => !line.startsWith('>>>')).join('\n');
process.stdout.write(json);

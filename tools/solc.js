#!/usr/bin/env node
// A native-solc-compatible front end for npm `solc` (solc-js), so that py-solc-x and brownie can
// compile offline. It answers the four things they use: --version, --help, --standard-json (stdin)
// and --combined-json FIELDS FILE... (or `-` for stdin). Other flags (--allow-paths, --base-path,
// --optimize, --evm-version, remappings like @x/=path/) are accepted the way solc accepts them.
"use strict";
const fs = require("fs");
const path = require("path");

const projectRoot = path.resolve(__dirname, "..");
const solc = require(path.join(projectRoot, "node_modules", "solc"));

function nativeVersion() {
  // solc-js reports "0.8.28+commit.7893614a.Emscripten.clang"; native solc says ".Linux.g++".
  return solc.version().replace(".Emscripten.clang", ".Linux.g++");
}

const HELP = `solc, the Solidity commandline compiler (solc-js ${solc.version()} behind a native-style front end).

Usage: solc [options] [input_file...]

Allowed options:
  --help                 Show help message and exit.
  --version              Show version and exit.
  --standard-json        Read Standard JSON input from stdin, write Standard JSON output to stdout.
  --combined-json arg    Output a single json document containing the specified information.
                         Available: abi,asm,ast,bin,bin-runtime,devdoc,function-debug,
                         function-debug-runtime,generated-sources,generated-sources-runtime,
                         hashes,metadata,opcodes,srcmap,srcmap-runtime,storage-layout,userdoc
  --optimize             Enable bytecode optimizer.
  --optimize-runs n      Runs for the optimizer (default 200).
  --evm-version version  Target EVM version (e.g. shanghai).
  --base-path path       Root of the source tree for imports.
  --include-path path    Extra source directory for imports.
  --allow-paths path(s)  Accepted for compatibility; every readable path is allowed.
  --output-dir path      Accepted for compatibility; output goes to stdout.
  --overwrite            Accepted for compatibility.
  --no-color             Accepted for compatibility.
  prefix=path            Import remapping.
`;

function parseArgs(argv) {
  const opts = { files: [], remappings: [], includePaths: [], optimizeRuns: 200 };
  const takesValue = new Set([
    "--combined-json", "--optimize-runs", "--evm-version", "--base-path", "--include-path",
    "--allow-paths", "--output-dir", "-o",
  ]);
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    if (arg.startsWith("--") && arg.includes("=")) {
      [arg, value] = [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)];
    } else if (takesValue.has(arg)) {
      value = argv[++i];
    }
    switch (arg) {
      case "--help": opts.help = true; break;
      case "--version": opts.version = true; break;
      case "--standard-json": opts.standardJson = true; break;
      case "--combined-json": opts.combinedJson = value.split(","); break;
      case "--optimize": opts.optimize = true; break;
      case "--optimize-runs": opts.optimizeRuns = parseInt(value, 10); break;
      case "--evm-version": opts.evmVersion = value; break;
      case "--base-path": opts.basePath = value; break;
      case "--include-path": opts.includePaths.push(value); break;
      case "--allow-paths": case "--output-dir": case "-o": break;
      case "--overwrite": case "--no-color": case "--pretty-json": break;
      default:
        if (arg.startsWith("-") && arg !== "-") {
          process.stderr.write(`Error: unrecognised option '${arg}'\n`);
          process.exit(1);
        }
        if (!arg.startsWith("-") && arg.includes("=") && !fs.existsSync(arg)) opts.remappings.push(arg);
        else opts.files.push(arg);
    }
  }
  return opts;
}

function importCallback(opts) {
  const roots = [opts.basePath || "", ...opts.includePaths, process.cwd(), projectRoot];
  return (importPath) => {
    for (const root of roots) {
      const candidate = path.resolve(root, importPath);
      if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, "utf8") };
    }
    return { error: `File not found: ${importPath}` };
  };
}

function compileStandard(inputText, opts) {
  return solc.compile(inputText, { import: importCallback(opts) });
}

// solc's combined-json field name -> Standard JSON output selection and a reader of the result.
const COMBINED = {
  abi: ["abi", (c) => c.abi],
  asm: ["evm.legacyAssembly", (c) => c.evm.legacyAssembly],
  bin: ["evm.bytecode.object", (c) => c.evm.bytecode.object],
  "bin-runtime": ["evm.deployedBytecode.object", (c) => c.evm.deployedBytecode.object],
  devdoc: ["devdoc", (c) => c.devdoc],
  "function-debug": ["evm.bytecode.functionDebugData", (c) => c.evm.bytecode.functionDebugData],
  "function-debug-runtime": ["evm.deployedBytecode.functionDebugData", (c) => c.evm.deployedBytecode.functionDebugData],
  "generated-sources": ["evm.bytecode.generatedSources", (c) => c.evm.bytecode.generatedSources],
  "generated-sources-runtime": ["evm.deployedBytecode.generatedSources", (c) => c.evm.deployedBytecode.generatedSources],
  hashes: ["evm.methodIdentifiers", (c) => c.evm.methodIdentifiers],
  metadata: ["metadata", (c) => c.metadata],
  opcodes: ["evm.bytecode.opcodes", (c) => c.evm.bytecode.opcodes],
  srcmap: ["evm.bytecode.sourceMap", (c) => c.evm.bytecode.sourceMap],
  "srcmap-runtime": ["evm.deployedBytecode.sourceMap", (c) => c.evm.deployedBytecode.sourceMap],
  "storage-layout": ["storageLayout", (c) => c.storageLayout],
  userdoc: ["userdoc", (c) => c.userdoc],
};

function combinedJson(opts) {
  const sources = {};
  for (const file of opts.files) {
    if (file === "-") sources["<stdin>"] = { content: fs.readFileSync(0, "utf8") };
    else sources[file] = { content: fs.readFileSync(file, "utf8") };
  }
  const fields = opts.combinedJson.filter((f) => f !== "ast" && f !== "compact-format");
  for (const f of fields) {
    if (!COMBINED[f]) {
      process.stderr.write(`Error: invalid option to --combined-json: ${f}\n`);
      process.exit(1);
    }
  }
  const input = {
    language: "Solidity",
    sources,
    settings: {
      remappings: opts.remappings,
      optimizer: { enabled: !!opts.optimize, runs: opts.optimizeRuns },
      outputSelection: { "*": { "*": fields.map((f) => COMBINED[f][0]), "": ["ast"] } },
    },
  };
  if (opts.evmVersion) input.settings.evmVersion = opts.evmVersion;
  const output = JSON.parse(compileStandard(JSON.stringify(input), opts));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const e of output.errors || []) process.stderr.write((e.formattedMessage || e.message) + "\n");
  if (errors.length) process.exit(1);
  const result = { contracts: {}, sourceList: Object.keys(sources), version: nativeVersion() };
  for (const [file, contracts] of Object.entries(output.contracts || {})) {
    for (const [name, c] of Object.entries(contracts)) {
      const entry = {};
      for (const f of fields) entry[f] = COMBINED[f][1](c);
      result.contracts[`${file}:${name}`] = entry;
    }
  }
  if (opts.combinedJson.includes("ast")) {
    result.sources = {};
    for (const [file, s] of Object.entries(output.sources || {})) result.sources[file] = { AST: s.ast };
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.version) {
    process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${nativeVersion()}\n`);
  } else if (opts.help) {
    process.stdout.write(HELP);
  } else if (opts.standardJson) {
    process.stdout.write(compileStandard(fs.readFileSync(0, "utf8"), opts) + "\n");
  } else if (opts.combinedJson) {
    combinedJson(opts);
  } else {
    process.stderr.write("Error: give --standard-json, --combined-json FIELDS FILE..., --version or --help\n");
    process.exit(1);
  }
}

main();

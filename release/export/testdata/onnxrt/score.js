// Scores records with an exported ONNX model in onnxruntime-node, for the export package's
// tests. Usage: node score.js MODEL.onnx INPUTS.json
// INPUTS.json: {"column": {"type": "float64" | "string", "values": [...]}, ...}; every column
// becomes a tensor of shape [N, 1]. Prints {"probability": [...]} (or {"error": "..."} and
// exits 1).
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [modelPath, inputsPath] = process.argv.slice(2);
  const spec = JSON.parse(fs.readFileSync(inputsPath, 'utf8'));
  const feeds = {};
  for (const [name, col] of Object.entries(spec)) {
    const data = col.type === 'float64' ? Float64Array.from(col.values) : col.values;
    feeds[name] = new ort.Tensor(col.type, data, [col.values.length, 1]);
  }
  const session = await ort.InferenceSession.create(modelPath);
  const out = await session.run(feeds);
  const p = out['probability'];
  process.stdout.write(JSON.stringify({
    version: ort.env.versions.node,
    dims: p.dims,
    type: p.type,
    probability: Array.from(p.data),
  }));
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err && err.message ? err.message : err) }));
  process.exit(1);
});

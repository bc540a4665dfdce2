// Generate images from a dcgan-forge ONNX generator with onnxruntime-node.
//
//   node generate.mjs MODEL.onnx [COUNT] [FIRST.pnm] [--label NAME|INDEX]
//
// Everything comes from the model file itself: the latent size, image shape, output kind, latent
// distribution and, for a conditional model, its class names are in its metadata_props (read
// below with a few lines of protobuf decoding, since onnxruntime's JavaScript API does not expose
// them). A conditional model gets one label per image: --label's class for all of them (a name,
// any case, or an index, as in `gan generate --label`), or without it the classes in turn
// (image i gets class i % classes). Prints a JSON summary, exits 1 if the images do not have the
// promised shape, type or range, and optionally writes the first image as a PGM/PPM file.
import { readFileSync, writeFileSync } from "node:fs";
import ort from "onnxruntime-node";

// ModelProto.metadata_props is field 14; each entry is {key: field 1, value: field 2}.
function readVarint(buf, pos) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = buf[pos++];
    value += (byte & 0x7f) * 2 ** shift; // no bit ops: lengths may exceed 2^31
    if (byte < 0x80) return [value, pos];
    shift += 7;
  }
}

function fields(buf, start, end, visit) {
  let pos = start;
  while (pos < end) {
    let tag;
    [tag, pos] = readVarint(buf, pos);
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === 0) [, pos] = readVarint(buf, pos);
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      let len;
      [len, pos] = readVarint(buf, pos);
      visit(field, pos, pos + len);
      pos += len;
    } else throw new Error(`unsupported protobuf wire type ${wire}: is this an ONNX file?`);
  }
}

export function readMetadata(bytes) {
  const meta = {};
  fields(bytes, 0, bytes.length, (field, start, end) => {
    if (field !== 14) return;
    const entry = {};
    fields(bytes, start, end, (f, s, e) => {
      entry[f] = bytes.subarray(s, e).toString("utf8");
    });
    meta[entry[1]] = entry[2] ?? "";
  });
  return meta;
}

// Seeded standard normal latents (mulberry32 + Box-Muller), so runs are repeatable.
function standardNormal(count, seed) {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 1) / 4294967297; // in (0, 1)
  };
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const a = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(a);
    if (i + 1 < count) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

function writePnm(path, images, meta) {
  // first image as 8-bit PGM (1 channel) or PPM (3 channels), rows top to bottom
  const [h, w, c] = [meta.height, meta.width, meta.channels].map(Number);
  const pixels = Buffer.alloc(h * w * c);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let k = 0; k < c; k++) {
        const v = meta.output === "uint8"
          ? images.data[(y * w + x) * c + k] // NHWC uint8
          : Math.round((images.data[(k * h + y) * w + x] + 1) * 127.5); // NCHW in [-1, 1]
        pixels[(y * w + x) * c + k] = v;
      }
  const header = Buffer.from(`${c === 1 ? "P5" : "P6"}\n${w} ${h}\n255\n`);
  writeFileSync(path, Buffer.concat([header, pixels]));
}

// --label NAME|INDEX -> the class index, checked against the model's classes like the CLI does.
function parseLabel(label, classNames) {
  if (!classNames.length)
    throw new Error(`--label ${label}: this model is unconditional (it has no classes)`);
  const byName = classNames.findIndex((n) => n.toLowerCase() === label.toLowerCase());
  if (byName >= 0) return byName;
  if (/^-?\d+$/.test(label)) {
    const index = Number(label);
    if (index >= 0 && index < classNames.length) return index;
    throw new Error(`--label ${label} is out of range, this model has ${classNames.length} ` +
      `classes (0 to ${classNames.length - 1})`);
  }
  throw new Error(`--label ${label}: no such class; give an index (0 to ` +
    `${classNames.length - 1}) or one of: ${classNames.join(", ")}`);
}

function parseArgs(argv) {
  const positional = [];
  let label;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--label") {
      label = argv[++i];
      if (label === undefined) throw new Error("--label needs a class name or index");
    } else positional.push(argv[i]);
  }
  const [modelPath, countArg = "8", pnmPath] = positional;
  return { modelPath, countArg, pnmPath, label };
}

async function main() {
  const { modelPath, countArg, pnmPath, label } = parseArgs(process.argv.slice(2));
  if (!modelPath)
    throw new Error("usage: node generate.mjs MODEL.onnx [COUNT] [FIRST.pnm] [--label NAME]");
  const bytes = readFileSync(modelPath);
  const meta = readMetadata(bytes);
  if (meta.format !== "dcgan-forge/generator")
    throw new Error(`${modelPath} is not a dcgan-forge generator (no format metadata)`);
  if (meta.latent !== "standard_normal")
    throw new Error(`unknown latent distribution ${meta.latent}`);
  const count = Number(countArg);
  if (!Number.isInteger(count) || count < 1)
    throw new Error(`COUNT must be a positive integer, got ${countArg}`);
  const [nz, h, w, c] = [meta.nz, meta.height, meta.width, meta.channels].map(Number);
  const classNames = JSON.parse(meta.class_names ?? "[]");
  const fixed = label === undefined ? undefined : parseLabel(label, classNames);

  const session = await ort.InferenceSession.create(bytes); // one self-contained file
  const conditional = session.inputNames.includes("labels"); // exactly when class_names is set
  if (conditional && !classNames.length)
    throw new Error(`${modelPath} takes labels but its metadata names no classes`);
  const feeds = { z: new ort.Tensor("float32", standardNormal(count * nz, 0), [count, nz]) };
  let labels = [];
  if (conditional) {
    // input `labels`: int64 [count], one class index per image
    labels = Array.from({ length: count }, (_, i) => fixed ?? i % classNames.length);
    feeds.labels = new ort.Tensor("int64", BigInt64Array.from(labels, BigInt), [count]);
  }
  const { images } = await session.run(feeds);

  const expected = meta.output === "uint8" ? [count, h, w, c] : [count, c, h, w];
  const [lo, hi] = meta.output === "uint8" ? [0, 255] : [-1, 1];
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (const v of images.data) {
    min = Math.min(min, v);
    max = Math.max(max, v);
    sum += v;
  }
  const problems = [];
  if (JSON.stringify(images.dims) !== JSON.stringify(expected))
    problems.push(`shape ${JSON.stringify(images.dims)}, expected ${JSON.stringify(expected)}`);
  if (images.type !== (meta.output === "uint8" ? "uint8" : "float32"))
    problems.push(`type ${images.type}`);
  if (!(min >= lo && max <= hi)) problems.push(`values in [${min}, ${max}], not [${lo}, ${hi}]`);
  if (pnmPath) writePnm(pnmPath, images, meta);
  const summary = {
    model: modelPath, onnxruntime: ort.env.versions.node, output: meta.output,
    conditional, labels: labels.map((k) => classNames[k]),
    dims: images.dims, type: images.type, min, max, mean: sum / images.data.length,
    ok: problems.length === 0, problems,
  };
  console.log(JSON.stringify(summary));
  if (problems.length) process.exit(1);
}

main().catch((e) => {
  console.error(`error: ${e.message}`);
  process.exit(1);
});

// PawLab's exported classifier: the run's model in ONNX Runtime Web, offline, in this folder.
//
// photo or camera frame -> upright RGB pixels (EXIF orientation applied, no colour management)
//   -> PawLab's resize (core.data.images.load_resized: a JPEG's reduced-scale decode, then
//      Pillow's antialiased bilinear resample, reimplemented below to the same integer arithmetic)
//   -> model.onnx: calibrated probabilities (the run's temperature is inside the graph)
//   -> the answer: "None of these" (embedding far from every training photo's),
//      "Not sure" (top probability below the run's threshold), or the class.
//
// Every name a person chose (class names, file names) is put on the page as text, never as HTML.
// For automation, #result carries the latest answer in data-* attributes (see showAnswer).
"use strict";

const CONFIG_FILE = "pawlab.json";
// Pillow's fixed-point resample: coefficients with 22 fractional bits (Resample.c PRECISION_BITS).
const PRECISION_BITS = 22;
const ONE = 2 ** PRECISION_BITS;
// Frames counted for the camera's frames per second.
const FPS_WINDOW = 10;
const ABSTAIN_TEXT = { unsure: "Not sure", unknown: "None of these" };

const state = { config: null, classifier: null, embedder: null, reference: null, count: 0, camera: null, ready: null };
const $ = (id) => document.getElementById(id);

// --- loading ---------------------------------------------------------------------------

async function load() {
  const response = await fetch(CONFIG_FILE);
  const config = await response.json();
  state.config = config;
  showModel(config);
  ort.env.wasm.numThreads = 1; // single-threaded: no cross-origin isolation needed
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = new URL("./", location.href).href;
  const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  state.classifier = await ort.InferenceSession.create(config.model, options);
  if (config.novelty) {
    state.embedder = await ort.InferenceSession.create(config.novelty.model, options);
    state.reference = await loadReference(config.novelty);
  }
  const status = $("status");
  status.textContent = "Ready: runs in this browser, nothing is sent anywhere.";
  status.dataset.ready = "true";
}

function showModel(config) {
  $("title").textContent = `PawLab classifier: ${config.run}`;
  document.title = `PawLab: ${config.run}`;
  const classes = $("classes");
  for (const name of config.classes) {
    const chip = document.createElement("span");
    chip.textContent = name;
    classes.append(chip);
  }
  const checks = [`"Not sure" below ${percent(config.confidence_threshold)} confidence`];
  if (config.novelty) checks.push('"None of these" for photos unlike the training photos');
  $("about").textContent =
    `${config.image_size} px, calibrated probabilities (temperature ${config.temperature.toFixed(3)}); ` +
    `${checks.join("; ")}. ONNX Runtime Web ${config.runtime_version}, WebAssembly.`;
}

async function loadReference(novelty) {
  // The training photos' unit embeddings as float16, row after row (novelty.npz's own precision).
  const bytes = await (await fetch(novelty.reference)).arrayBuffer();
  const halves = new Uint16Array(bytes);
  const floats = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) floats[i] = halfToFloat(halves[i]);
  return floats;
}

function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

// --- pixels, as PawLab decodes and resizes them ---------------------------------------

async function decodeFile(file) {
  // EXIF orientation applied (Pillow's exif_transpose); no ICC conversion (Pillow ignores profiles).
  const bitmap = await createImageBitmap(file, {
    imageOrientation: "from-image",
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  const head = new Uint8Array(await file.slice(0, 3).arrayBuffer());
  const isJpeg = head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff;
  return { image: rgbaOf(bitmap, bitmap.width, bitmap.height), isJpeg, bitmap };
}

function rgbaOf(source, width, height) {
  // Transparent pixels over white, as core.data.images._to_rgb does.
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.imageSmoothingEnabled = false;
  context.fillStyle = "#fff";
  context.fillRect(0, 0, width, height);
  context.drawImage(source, 0, 0, width, height);
  return { data: context.getImageData(0, 0, width, height).data, width, height, channels: 4 };
}

function modelPixels(image, size, isJpeg) {
  // core.data.images.load_resized(source, size): draft (JPEG only), then bilinear resample.
  const factor = isJpeg ? draftFactor(image.width, image.height, size) : 1;
  const drafted = factor > 1 ? boxReduce(image, factor) : image;
  return resample(drafted, size, size);
}

function draftFactor(width, height, size) {
  // Pillow's JpegImageFile.draft: the largest of 8, 4, 2 that keeps both sides >= size.
  const scale = Math.min(Math.floor(width / size), Math.floor(height / size));
  for (const factor of [8, 4, 2]) if (scale >= factor) return factor;
  return 1;
}

function boxReduce(image, factor) {
  // libjpeg's reduced-scale decode, approximated by averaging factor x factor blocks
  // (the browser cannot decode a JPEG at reduced scale); edge blocks average what they have.
  const width = Math.ceil(image.width / factor);
  const height = Math.ceil(image.height / factor);
  const out = new Uint8ClampedArray(width * height * 3);
  const src = image.data;
  const step = image.channels;
  for (let y = 0; y < height; y++) {
    const y1 = Math.min(image.height, (y + 1) * factor);
    for (let x = 0; x < width; x++) {
      const x1 = Math.min(image.width, (x + 1) * factor);
      let r = 0,
        g = 0,
        b = 0,
        n = 0;
      for (let yy = y * factor; yy < y1; yy++) {
        for (let xx = x * factor; xx < x1; xx++) {
          const i = (yy * image.width + xx) * step;
          r += src[i];
          g += src[i + 1];
          b += src[i + 2];
          n++;
        }
      }
      const o = (y * width + x) * 3;
      out[o] = Math.round(r / n);
      out[o + 1] = Math.round(g / n);
      out[o + 2] = Math.round(b / n);
    }
  }
  return { data: out, width, height, channels: 3 };
}

function coefficients(inSize, outSize) {
  // Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear (triangle) filter.
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1.0);
  const support = 1.0 * filterScale;
  const bounds = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    const weights = [];
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      const w = Math.max(0, 1 - Math.abs((x + xmin - center + 0.5) / filterScale));
      weights.push(w);
      total += w;
    }
    const fixed = weights.map((w) => {
      const k = total !== 0 ? w / total : w;
      return k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
    });
    bounds.push({ xmin, fixed });
  }
  return bounds;
}

function clip8(sum) {
  return Math.min(255, Math.max(0, Math.floor(sum / ONE)));
}

function resample(image, outWidth, outHeight) {
  // Pillow's ImagingResample: horizontal pass, then vertical, each rounded to 8 bits.
  let current = image;
  if (outWidth !== image.width) current = resampleAxis(current, outWidth, true);
  if (outHeight !== image.height) current = resampleAxis(current, outHeight, false);
  if (current.channels === 3) return current.data;
  return toRgb(current);
}

function resampleAxis(image, outSize, horizontal) {
  const width = horizontal ? outSize : image.width;
  const height = horizontal ? image.height : outSize;
  const kernel = coefficients(horizontal ? image.width : image.height, outSize);
  const out = new Uint8ClampedArray(width * height * 3);
  const src = image.data;
  const step = image.channels;
  const half = ONE / 2;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const { xmin, fixed } = kernel[horizontal ? x : y];
      let r = half,
        g = half,
        b = half;
      for (let k = 0; k < fixed.length; k++) {
        const i = horizontal ? (y * image.width + xmin + k) * step : ((xmin + k) * image.width + x) * step;
        r += src[i] * fixed[k];
        g += src[i + 1] * fixed[k];
        b += src[i + 2] * fixed[k];
      }
      const o = (y * width + x) * 3;
      out[o] = clip8(r);
      out[o + 1] = clip8(g);
      out[o + 2] = clip8(b);
    }
  }
  return { data: out, width, height, channels: 3 };
}

function toRgb(image) {
  const out = new Uint8ClampedArray(image.width * image.height * 3);
  for (let i = 0, o = 0; o < out.length; i += 4, o += 3) {
    out[o] = image.data[i];
    out[o + 1] = image.data[i + 1];
    out[o + 2] = image.data[i + 2];
  }
  return out;
}

// --- the model and the answer ------------------------------------------------------------

async function run(session, rgb, size) {
  const input = new ort.Tensor("float32", Float32Array.from(rgb), [1, size, size, 3]);
  const outputs = await session.run({ [session.inputNames[0]]: input });
  return outputs[session.outputNames[0]].data;
}

async function classify(image, isJpeg) {
  const config = state.config;
  const size = config.image_size;
  const probabilities = await run(state.classifier, modelPixels(image, size, isJpeg), size);
  // Blocks averaged in place of libjpeg's reduced-scale decode (1: the pixels are Pillow's exactly).
  const draft = isJpeg ? draftFactor(image.width, image.height, size) : 1;
  let distance = null;
  if (state.embedder) {
    const embedSize = config.novelty.image_size;
    distance = noveltyDistance(await run(state.embedder, modelPixels(image, embedSize, isJpeg), embedSize));
  }
  return { ...answerOf(Array.from(probabilities), distance), draft };
}

function noveltyDistance(embedding) {
  // core.models.novelty: 1 - mean cosine similarity to the k nearest training photos.
  const { count, dims, k } = state.config.novelty;
  let norm = 0;
  for (const v of embedding) norm += v * v;
  norm = Math.max(Math.sqrt(norm), 1e-12);
  const similarities = new Float64Array(count);
  const reference = state.reference;
  for (let row = 0; row < count; row++) {
    let dot = 0;
    const base = row * dims;
    for (let d = 0; d < dims; d++) dot += reference[base + d] * embedding[d];
    similarities[row] = dot / norm;
  }
  const nearest = Array.from(similarities)
    .sort((a, b) => b - a)
    .slice(0, k);
  return 1 - nearest.reduce((sum, s) => sum + s, 0) / nearest.length;
}

function answerOf(probabilities, distance) {
  // core.serving.inference.Thresholds.answer: unknown first, then unsure, else the class.
  const config = state.config;
  let best = 0;
  for (let i = 1; i < probabilities.length; i++) if (probabilities[i] > probabilities[best]) best = i;
  const confidence = probabilities[best];
  const label = config.classes[best];
  let abstained = null;
  let reason = "";
  const novelty = config.novelty;
  if (distance !== null && novelty && distance > novelty.threshold) {
    abstained = "unknown";
    reason = `looks like none of the training photos (distance ${distance.toFixed(3)} > ${novelty.threshold.toFixed(3)})`;
  } else if (confidence < config.confidence_threshold) {
    abstained = "unsure";
    reason = `only ${percent(confidence)} sure; this run answers from ${percent(config.confidence_threshold)}`;
  }
  return { label, confidence, probabilities, distance, abstained, reason };
}

function percent(value) {
  return `${Math.round(value * 100)}%`;
}

// --- showing it -------------------------------------------------------------------------

function showAnswer(file, answer) {
  const result = $("result");
  const config = state.config;
  state.count += 1;
  const byClass = {};
  config.classes.forEach((name, i) => (byClass[name] = answer.probabilities[i]));
  Object.assign(result.dataset, {
    file,
    label: answer.label,
    answer: answer.abstained === null ? answer.label : answer.abstained,
    abstained: answer.abstained === null ? "" : answer.abstained,
    probabilities: JSON.stringify(byClass),
    distance: answer.distance === null ? "" : String(answer.distance),
    draft: String(answer.draft),
    error: "",
    count: String(state.count),
  });
  const text = $("answer");
  text.textContent = answer.abstained === null ? answer.label : ABSTAIN_TEXT[answer.abstained];
  text.classList.toggle("abstained", answer.abstained !== null);
  $("reason").textContent = answer.reason || `${percent(answer.confidence)} sure`;
  const body = $("probabilities").tBodies[0];
  body.replaceChildren(
    ...config.classes.map((name, i) => {
      const row = document.createElement("tr");
      const label = document.createElement("td");
      label.textContent = name;
      const track = document.createElement("td");
      const outer = document.createElement("div");
      outer.className = "track";
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = `${(answer.probabilities[i] * 100).toFixed(1)}%`;
      outer.append(bar);
      track.append(outer);
      const value = document.createElement("td");
      value.textContent = `${(answer.probabilities[i] * 100).toFixed(1)}%`;
      row.append(label, track, value);
      return row;
    }),
  );
}

function showError(file, message) {
  const result = $("result");
  state.count += 1;
  Object.assign(result.dataset, { file, label: "", answer: "", abstained: "", probabilities: "{}", error: message });
  result.dataset.count = String(state.count);
  $("answer").textContent = `${file}: ${message}`;
  $("reason").textContent = "";
  $("probabilities").tBodies[0].replaceChildren();
}

function showPreview(bitmap) {
  const canvas = $("preview");
  const scale = Math.min(1, 320 / Math.max(bitmap.width, bitmap.height));
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  canvas.hidden = false;
}

// --- photos -----------------------------------------------------------------------------

async function classifyFiles(files) {
  await state.ready;
  for (const file of files) {
    try {
      const { image, isJpeg, bitmap } = await decodeFile(file);
      showPreview(bitmap);
      bitmap.close();
      showAnswer(file.name, await classify(image, isJpeg));
    } catch (error) {
      showError(file.name, `could not be read as a photo (${error.message || error})`);
    }
  }
}

function wirePhotos() {
  const input = $("photos");
  input.addEventListener("change", async () => {
    const files = Array.from(input.files);
    await classifyFiles(files);
    input.value = ""; // the same photo chosen again is answered again
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    classifyFiles(Array.from(event.dataTransfer.files));
  });
}

// --- the camera ---------------------------------------------------------------------------

async function startCamera() {
  const video = $("video");
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { facingMode: $("facing").value },
    audio: false,
  });
  video.srcObject = stream;
  await video.play();
  video.hidden = false;
  $("preview").hidden = true;
  state.camera = { stream, times: [] };
  $("camera").textContent = "⏹ Stop camera";
  cameraLoop();
}

function stopCamera() {
  if (!state.camera) return;
  for (const track of state.camera.stream.getTracks()) track.stop();
  state.camera = null;
  $("video").hidden = true;
  $("camera").textContent = "📷 Start camera";
  delete $("result").dataset.fps;
}

async function cameraLoop() {
  const video = $("video");
  await state.ready;
  while (state.camera) {
    const camera = state.camera;
    if (video.videoWidth > 0) {
      // A frame is raw pixels, never a JPEG: no reduced-scale decode, the resample alone.
      const image = rgbaOf(video, video.videoWidth, video.videoHeight);
      const answer = await classify(image, false);
      if (state.camera !== camera) break;
      showAnswer("camera", answer);
      camera.times.push(performance.now());
      if (camera.times.length > FPS_WINDOW) camera.times.shift();
      if (camera.times.length > 1) {
        const seconds = (camera.times[camera.times.length - 1] - camera.times[0]) / 1000;
        $("result").dataset.fps = ((camera.times.length - 1) / seconds).toFixed(1);
      }
    }
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
}

function wireCamera() {
  const button = $("camera");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    button.disabled = true;
    button.title = "This browser offers no camera here (it needs https or localhost).";
    return;
  }
  button.addEventListener("click", async () => {
    if (state.camera) return stopCamera();
    try {
      await startCamera();
    } catch (error) {
      $("answer").textContent = `The camera could not be started: ${error.message || error}`;
    }
  });
  $("facing").addEventListener("change", async () => {
    if (!state.camera) return;
    stopCamera();
    await startCamera();
  });
}

// --- start ----------------------------------------------------------------------------------

wirePhotos();
wireCamera();
state.ready = load();
state.ready.catch((error) => {
  const status = $("status");
  status.textContent = `The model could not be loaded: ${error.message || error}`;
  status.classList.add("error");
  status.dataset.ready = "error";
});

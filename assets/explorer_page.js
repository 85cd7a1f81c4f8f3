// The latent explorer page (webpage.py inlines this file): the decoder's forward pass in plain JavaScript over
// the embedded weights, the sliders and pictures, and the plotly scatter. window.explorer is its small API.
"use strict";
const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];  // plotly's D3 = matplotlib's tab10
const LATENT_DIM = DATA.config.latent_dim;
const [CHANNELS, HEIGHT, WIDTH] = DATA.config.image_shape;

// ------------------------------------------------------------------------------------------ embedded arrays
function bytes(base64) {
  const text = atob(base64), out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}
async function gunzip(base64) {
  const stream = new Blob([bytes(base64)]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
const WEIGHTS = Object.fromEntries(Object.entries(DATA.weights).map(
  ([name, entry]) => [name, new Float32Array(bytes(entry.float32).buffer)]));
const POINTS = DATA.points.count;
const MEANS = new Float32Array(bytes(DATA.points.means).buffer);  // POINTS x LATENT_DIM, row by row
const LABELS = bytes(DATA.points.labels);
const MEMBERS = DATA.class_names.map((name, c) => [...LABELS.keys()].filter(i => LABELS[i] === c));  // points by class
const COLOURINGS = Object.fromEntries(DATA.colourings.map(  // by class, or by a known factor's value index
  colouring => [colouring.key, { ...colouring, values: bytes(DATA.points.colourings[colouring.key]) }]));
const pointCode = i => Array.from(MEANS.subarray(i * LATENT_DIM, (i + 1) * LATENT_DIM));

// ------------------------------------------------------------------------------------------ the decoder
// Each op of the layer plan maps (values, shape) to (values, shape); shapes are [features] or [channels, height,
// width], and the weights are laid out as PyTorch stores them (Linear: out x in; Conv2d: out x in x k x k;
// ConvTranspose2d: in x out x k x k). The plan ends with the likelihood's output steps, value by value in double
// precision: the page runs ops and knows no likelihood.
const sigmoid = v => 1 / (1 + Math.exp(-v));
function continuousBernoulliMean(logit) {  // as torch.distributions.ContinuousBernoulli(logits=...).mean
  const p = sigmoid(logit), [low, high] = [0.499, 0.501];
  if (p > low && p < high) { const x = p - 0.5; return 0.5 + (1 / 3 + 16 / 45 * x * x) * x; }
  return p / (2 * p - 1) + 1 / (Math.log1p(-p) - Math.log(p));
}
const valueByValue = f => (x, shape, layer) => [Float64Array.from(x, v => f(v, layer)), shape];
const LAYERS = {
  sigmoid: valueByValue(sigmoid),
  tanh: valueByValue(Math.tanh),
  affine: valueByValue((v, layer) => v * layer.scale + layer.shift),
  continuous_bernoulli_mean: valueByValue(continuousBernoulliMean),
  linear(x, shape, layer) {
    const w = WEIGHTS[layer.weight], b = layer.bias && WEIGHTS[layer.bias];
    const n = x.length, m = w.length / n, y = new Float32Array(m);
    for (let o = 0; o < m; o++) {
      let sum = b ? b[o] : 0;
      for (let i = 0, row = o * n; i < n; i++) sum += w[row + i] * x[i];
      y[o] = sum;
    }
    return [y, [m]];
  },
  reshape: (x, shape, layer) => [x, layer.shape],
  relu: (x, shape) => [x.map(v => (v > 0 ? v : 0)), shape],
  elu: (x, shape) => [x.map(v => (v > 0 ? v : Math.expm1(v))), shape],
  silu: (x, shape) => [x.map(v => v / (1 + Math.exp(-v))), shape],
  batchnorm(x, shape, layer) {  // eval mode: the running statistics
    const [w, b, mean, variance] = ["weight", "bias", "mean", "var"].map(key => WEIGHTS[layer[key]]);
    const per = x.length / shape[0];
    return [x.map((v, i) => {
      const c = Math.floor(i / per);
      return (v - mean[c]) / Math.sqrt(variance[c] + layer.eps) * w[c] + b[c];
    }), shape];
  },
  conv(x, [cIn, h, wd], layer) {
    const w = WEIGHTS[layer.weight], b = layer.bias && WEIGHTS[layer.bias], s = layer.stride, p = layer.padding;
    const k = layer.kernel, cOut = layer.out_channels, hOut = Math.floor((h + 2 * p - k) / s) + 1;
    const wOut = Math.floor((wd + 2 * p - k) / s) + 1, y = new Float32Array(cOut * hOut * wOut);
    for (let co = 0; co < cOut; co++)
      for (let oy = 0; oy < hOut; oy++)
        for (let ox = 0; ox < wOut; ox++) {
          let sum = b ? b[co] : 0;
          for (let ci = 0; ci < cIn; ci++)
            for (let ky = 0; ky < k; ky++) {
              const iy = oy * s - p + ky;
              if (iy < 0 || iy >= h) continue;
              for (let kx = 0; kx < k; kx++) {
                const ix = ox * s - p + kx;
                if (ix >= 0 && ix < wd) sum += w[((co * cIn + ci) * k + ky) * k + kx] * x[(ci * h + iy) * wd + ix];
              }
            }
          y[(co * hOut + oy) * wOut + ox] = sum;
        }
    return [y, [cOut, hOut, wOut]];
  },
  convT(x, [cIn, h, wd], layer) {  // each input value adds its kernel, times the value, to the output
    const w = WEIGHTS[layer.weight], b = layer.bias && WEIGHTS[layer.bias], s = layer.stride, p = layer.padding;
    const k = layer.kernel, cOut = layer.out_channels;
    const hOut = (h - 1) * s - 2 * p + k + layer.output_padding, wOut = (wd - 1) * s - 2 * p + k + layer.output_padding;
    const y = new Float32Array(cOut * hOut * wOut);
    for (let co = 0; co < cOut; co++) y.fill(b ? b[co] : 0, co * hOut * wOut, (co + 1) * hOut * wOut);
    for (let ci = 0; ci < cIn; ci++)
      for (let iy = 0; iy < h; iy++)
        for (let ix = 0; ix < wd; ix++) {
          const v = x[(ci * h + iy) * wd + ix];
          for (let co = 0; co < cOut; co++)
            for (let ky = 0; ky < k; ky++) {
              const oy = iy * s - p + ky;
              if (oy < 0 || oy >= hOut) continue;
              for (let kx = 0; kx < k; kx++) {
                const ox = ix * s - p + kx;
                if (ox >= 0 && ox < wOut) {
                  y[(co * hOut + oy) * wOut + ox] += v * w[((ci * cOut + co) * k + ky) * k + kx];
                }
              }
            }
        }
    return [y, [cOut, hOut, wOut]];
  },
};

/** The image the decoder makes of z: HEIGHT * WIDTH pixel values in [0, 1]. */
function decode(z) {
  let x = Float32Array.from(z), shape = [z.length];
  for (const layer of DATA.layers) [x, shape] = LAYERS[layer.op](x, shape, layer);
  return Float64Array.from(x, v => Math.min(1, Math.max(0, v)));
}

// ------------------------------------------------------------------------------------------ the page
const state = { z: DATA.start.slice(), pixels: null, picked: null, pictures: null, scatter: null };
const timings = {};

function draw(canvas, pixels) {
  const context = canvas.getContext("2d"), image = context.createImageData(WIDTH, HEIGHT);
  pixels.forEach((v, i) => { image.data.fill(Math.round(v * 255), 4 * i, 4 * i + 3); image.data[4 * i + 3] = 255; });
  context.putImageData(image, 0, 0);
}

const format = v => v.toFixed(2);
const classes = document.getElementById("classes");
const sliders = DATA.low.map((low, d) => {
  const high = DATA.high[d], row = document.createElement("div");
  row.className = "slider";
  row.innerHTML = `<label for="z${d}">z${d + 1}</label>
    <input type="range" id="z${d}" min="${low}" max="${high}" step="${(high - low) / 1000}" aria-label="z${d + 1}">
    <input type="number" id="z${d}-value" step="0.01" aria-label="z${d + 1}, typed">`;
  document.getElementById("sliders").append(row);
  const [range, number] = row.querySelectorAll("input");
  range.addEventListener("input", () => {
    classes.value = "";  // z is no longer the class mean
    state.z[d] = Number(range.value);
    number.value = format(state.z[d]);
    update();
  });
  number.addEventListener("change", () => {  // a typed value may leave the slider's range
    const typed = number.value === "" ? NaN : Number(number.value);
    if (Number.isFinite(typed)) setZ(state.z.map((v, i) => (i === d ? typed : v)));
    else number.value = format(state.z[d]);
  });
  return { range, number };
});

function update() {
  state.pixels = decode(state.z);
  draw(document.getElementById("decoded"), state.pixels);
  if (timings.firstImageMs === undefined) timings.firstImageMs = performance.now();
  moveMarker();
}

/** Move every slider (each shows its range's nearest value) and box to z, then decode once; the class menu shows
 * its placeholder again unless z is the class mean it chose (so that choosing that class again moves z). */
function setZ(z, classMean = false) {
  if (z.length !== LATENT_DIM || !z.every(Number.isFinite)) throw new Error(`z must be ${LATENT_DIM} finite numbers`);
  if (!classMean) classes.value = "";
  state.z = z.map(Number);
  sliders.forEach(({ range, number }, d) => { range.value = state.z[d]; number.value = format(state.z[d]); });
  update();
}

function showPoint(i) {
  setZ(pointCode(i));
  if (state.pictures) {
    state.picked = Array.from(state.pictures.subarray(i * HEIGHT * WIDTH, (i + 1) * HEIGHT * WIDTH), v => v / 255);
    draw(document.getElementById("picked"), state.picked);
  }
  document.getElementById("picked-label").textContent = `test image ${i}: ${DATA.class_names[LABELS[i]]}`;
}

classes.append(new Option("choose a class\u2026", ""));  // names as text, never as HTML
DATA.class_names.forEach((name, c) => { if (DATA.class_means[c]) classes.append(new Option(name, String(c))); });
const UNPICKED = document.getElementById("picked-label").textContent;
classes.addEventListener("change", () => {  // z is no longer the clicked test image's: that image goes
  if (classes.value === "") return;
  setZ(DATA.class_means[Number(classes.value)], true);
  state.picked = null;
  const canvas = document.getElementById("picked");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  document.getElementById("picked-label").textContent = UNPICKED;
});

// ------------------------------------------------------------------------------------------ the scatter
let markerQueued = false;
function moveMarker() {  // at most once per frame: plotly redraws the whole scene
  if (!state.scatter || markerQueued) return;
  markerQueued = true;
  requestAnimationFrame(() => {
    markerQueued = false;
    const [x, y, z] = DATA.dims.map(d => [state.z[d]]);
    Plotly.restyle(state.scatter, { x: [x], y: [y], z: [z] }, [DATA.class_names.length]);
  });
}

async function loadPlotly() {  // plotly.js travels gzipped: 1.5 MB instead of 4.8
  const script = document.createElement("script");
  script.textContent = new TextDecoder().decode(await gunzip(document.getElementById("plotly-gzip").textContent));
  document.head.append(script);
}

/** Each class trace's marker when the points are coloured by `key`: the class's colour, or a colour per point
 * from the factor's value index (one colour bar). */
function markers(key) {
  const colouring = COLOURINGS[key], bar = { title: { text: colouring.name, side: "right" }, x: 0, xanchor: "left",
                                             len: 0.5, thickness: 12 };
  return MEMBERS.map((members, c) => (colouring.by_class
    ? { size: 2, color: COLORS[c % COLORS.length], showscale: false }
    : { size: 2, color: members.map(i => colouring.values[i]), colorscale: "Viridis", cmin: 0,
        cmax: Math.max(colouring.levels - 1, 1), showscale: c === 0, colorbar: bar }));
}

function scatterTitle() {
  const most = LATENT_DIM > 3 ? `, the 3 of ${LATENT_DIM} dimensions that vary most` : "";
  document.getElementById("scatter-title").textContent = `posterior means of ${POINTS.toLocaleString("en")} of the ` +
    `${DATA.test_images.toLocaleString("en")} test images, coloured by ${COLOURINGS[colourBy.value].name}${most}: ` +
    "drag to rotate, scroll to zoom, click a point to go there";
}

const colourBy = document.getElementById("colour-by");
DATA.colourings.forEach(colouring => colourBy.append(new Option(colouring.name, colouring.key)));
document.getElementById("colour-row").hidden = DATA.colourings.length < 2;
colourBy.addEventListener("change", () => {
  if (!state.scatter) return;
  const key = colourBy.value;
  Plotly.update(state.scatter, { marker: markers(key) }, { showlegend: COLOURINGS[key].by_class },
                MEMBERS.map((members, c) => c));  // a legend would show each class in its first point's colour
  scatterTitle();
});

async function showScatter() {
  const dims = DATA.dims, axis = i => MEANS.filter((v, j) => j % LATENT_DIM === dims[i]);
  const [xs, ys, zs] = [0, 1, 2].map(axis), shown = markers(colourBy.value);
  const traces = DATA.class_names.map((name, c) => {
    const members = MEMBERS[c];
    return { type: "scatter3d", mode: "markers", name, x: members.map(i => xs[i]), y: members.map(i => ys[i]),
             z: members.map(i => zs[i]), customdata: members, marker: shown[c],
             hovertemplate: "%{meta}<br>test image %{customdata} (click: go there)<extra></extra>", meta: name };
  });
  const [x, y, z] = dims.map(d => [state.z[d]]);
  traces.push({ type: "scatter3d", mode: "markers", name: "z (sliders)", x, y, z, hoverinfo: "skip",
                marker: { size: 9, symbol: "diamond", color: "black" } });
  const scene = { aspectmode: "cube", camera: { eye: { x: 1.5, y: 1.5, z: 1.1 } } };
  dims.forEach((d, i) => {
    scene["xyz"[i] + "axis"] = { title: { text: `z${d + 1}` }, range: [DATA.low[d], DATA.high[d]], showspikes: false };
  });
  const layout = { scene, margin: { l: 0, r: 0, t: 0, b: 0 }, uirevision: "keep", font: { size: 11 },
                   legend: { orientation: "h", itemsizing: "constant", y: 0, yanchor: "top", font: { size: 11 } } };
  const box = document.getElementById("scatter");
  await Plotly.newPlot(box, traces, layout, { displaylogo: false, responsive: true });
  box.on("plotly_click", event => {
    const point = event.points.find(p => p.curveNumber < DATA.class_names.length);
    if (point) showPoint(Number(point.customdata));
  });
  state.scatter = box;
  scatterTitle();
  timings.scatterMs = performance.now();
}

// ------------------------------------------------------------------------------------------ start
const about = DATA.about, config = DATA.config;
document.getElementById("about").textContent = [
  `${config.model.toUpperCase()}, latent_dim ${LATENT_DIM}, ${config.likelihood} likelihood`,
  about.dataset ? `${about.dataset}` : "",
  about.beta !== undefined ? `beta ${about.beta}` : "", about.epoch !== undefined ? `epoch ${about.epoch}` : "",
  about.train_limit ? `${about.train_limit.toLocaleString("en")} training images` : "",
  about.run ? `run ${about.run}` : ""].filter(Boolean).join(" \u00b7 ");
document.getElementById("provenance").textContent = `checkpoint sha256 ${DATA.sha256}; the decoder runs in this ` +
  "page on the run's own weights: nothing is fetched from the network.";
setZ(state.z);
const ready = Promise.all([
  gunzip(DATA.points.images_gzip).then(pictures => { state.pictures = pictures; }),
  loadPlotly().then(showScatter),
]).catch(error => {  // e.g. a browser without DecompressionStream (before Chrome 80, Firefox 113, Safari 16.4)
  document.getElementById("scatter-title").textContent = `the scatter cannot be drawn here (${error}); ` +
    "the sliders and the decoder still work";
  throw error;
});

window.explorer = {
  setZ,
  z: () => state.z.slice(),
  pixels: () => Array.from(state.pixels),
  picked: () => state.picked && state.picked.slice(),
  showPoint, pointCode, decode, timings, ready, start: DATA.start,
  latentDim: LATENT_DIM, points: POINTS,
};

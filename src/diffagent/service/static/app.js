// The diffagent page: ask POST /select, show the answer. Every catalogue string goes in with textContent
// (no HTML parsing of data), links are built from numeric ids only, and images load only from https URLs.
"use strict";

const FORMATS = { a1111: "AUTOMATIC1111", comfyui: "ComfyUI", diffusers: "diffusers" };
const KEY_STORAGE = "diffagent.apiKey";
const $ = (id) => document.getElementById(id);
let current = null; // {request, answer}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

function civitaiModel(modelId, versionId) {
  const m = Number(modelId), v = Number(versionId);
  if (!Number.isSafeInteger(m) || !Number.isSafeInteger(v)) return null;
  return `https://civitai.com/models/${m}?modelVersionId=${v}`;
}

function civitaiImage(imageId) {
  const id = Number(imageId);
  return Number.isSafeInteger(id) ? `https://civitai.com/images/${id}` : null;
}

function httpsUrl(value) {
  try {
    const url = new URL(String(value));
    return url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

// A catalogue image, or a plain box saying so when it cannot load (offline, or gone from Civitai).
function image(url, alt, placeholderClass) {
  const img = el("img", { alt, loading: "lazy", referrerpolicy: "no-referrer" });
  img.addEventListener("error", () => img.replaceWith(el("div", { class: placeholderClass }, "image not reachable")));
  img.src = url;
  return img;
}

function link(href, text) {
  const a = el("a", { rel: "noopener noreferrer", target: "_blank" }, text);
  if (href) a.href = href;
  return a;
}

// --- talking to the service ------------------------------------------------------------------------

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: headers(),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) throw new HttpError(response.status, describe(response, data));
  return data;
}

function describe(response, data) {
  const detail = data && data.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`).join("; ");
  }
  const retry = response.headers.get("Retry-After");
  return `the service answered ${response.status}${retry ? `; retry in ${retry} s` : ""}`;
}

// --- state of the form -----------------------------------------------------------------------------

function request(formats) {
  const base = [...document.querySelectorAll("#base-models input:checked")].map((box) => box.value);
  const body = {
    prompt: $("prompt").value,
    base_models: base,
    installed: $("installed").checked,
    allow_nsfw: $("allow-nsfw").checked,
    allow_poi: $("allow-poi").checked,
  };
  if (formats) body.formats = formats;
  return body;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function askForKey(message) {
  $("key-form").hidden = false;
  if (message) $("key-hint").textContent = message;
  $("key").focus();
}

async function loadInfo() {
  const info = await call("GET", "/info");
  const holder = $("base-models");
  holder.replaceChildren();
  for (const base of info.base_models) {
    const box = el("input", { type: "checkbox", value: base.name });
    holder.append(el("label", { class: "chip" }, box, ` ${base.name} `, el("span", { class: "count" }, base.checkpoints)));
  }
  if (!info.base_models.length) holder.append(el("span", { class: "hint" }, "none in the catalogue"));
  $("generate").hidden = !info.generate;
  if (info.generate) $("generate").textContent = `Generate (${info.generate})`;
  $("prompt").maxLength = info.limits.prompt_chars;
  return info;
}

// --- the answer ------------------------------------------------------------------------------------

function render(answer) {
  const api = answer.api;
  const ckpt = api.checkpoint;
  $("low-confidence").hidden = !answer.low_confidence;
  $("notes").replaceChildren(...(answer.notes || []).map((note) => el("li", {}, note)));

  $("ckpt-name").textContent = ckpt.name;
  $("ckpt-base").textContent = ckpt.base_model;
  $("ckpt-ids").textContent = `model ${ckpt.model_id} · version ${ckpt.version_id}`;
  const ckptLink = $("ckpt-link");
  ckptLink.href = civitaiModel(ckpt.model_id, ckpt.version_id) || "#";

  const own = answer.evidence.filter((e) => e.model_id === ckpt.model_id && httpsUrl(e.url));
  const media = $("ckpt-media");
  media.replaceChildren();
  const pictures = own.length ? own : answer.evidence.filter((e) => httpsUrl(e.url));
  if (pictures.length) {
    media.append(image(httpsUrl(pictures[0].url), `A catalogue sample made with ${ckpt.name}`, "no-image"));
  } else {
    media.append(el("div", { class: "no-image" }, "no sample image"));
  }

  const settings = [
    ["Sampler", api.sampler],
    ["Steps", api.steps],
    ["CFG scale", api.cfg_scale],
    ["Size", `${api.width} × ${api.height}`],
    ["Clip skip", api.clip_skip],
    ["Seed", api.seed === -1 ? "random (-1)" : api.seed],
  ];
  if (api.scheduler) settings.push(["Scheduler", api.scheduler]);
  if (api.guidance !== undefined && api.guidance !== null) settings.push(["Guidance", api.guidance]);
  if (api.hires) settings.push(["Hires fix", `×${api.hires.scale} ${api.hires.upscaler || ""}`.trim()]);
  if (api.vae) settings.push(["VAE", api.vae.name]);
  $("settings").replaceChildren(...settings.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, String(value))]));
  const glance = [
    ["sampler", api.sampler],
    ["steps", api.steps],
    ["CFG", api.cfg_scale],
    ["size", `${api.width}×${api.height}`],
    ["LoRAs", api.loras.length ? api.loras.map((lora) => `${lora.name} ×${lora.weight}`).join(", ") : "none"],
  ];
  $("summary").replaceChildren(...glance.map(([name, value]) => el("li", {}, el("span", {}, name), String(value))));
  $("sent-prompt").textContent = api.prompt;
  $("negative").textContent = api.negative_prompt || "(none)";

  $("no-loras").hidden = api.loras.length > 0;
  $("loras").replaceChildren(
    ...api.loras.map((lora) =>
      el(
        "li",
        {},
        el("div", { class: "lora-head" }, link(civitaiModel(lora.model_id, lora.version_id), lora.name), el("span", { class: "badge" }, `weight ${lora.weight}`)),
        lora.trigger_words.length
          ? el("div", { class: "triggers" }, "Triggers: ", ...lora.trigger_words.map((word) => el("code", {}, word)))
          : el("div", { class: "hint" }, "no trigger words"),
      ),
    ),
  );

  $("alternatives").replaceChildren(
    ...answer.alternatives.map((alt, rank) =>
      el(
        "li",
        {},
        link(civitaiModel(alt.checkpoint.model_id, alt.checkpoint.version_id), alt.checkpoint.name),
        " ",
        el("span", { class: "badge" }, alt.checkpoint.base_model),
        " ",
        el("span", { class: "score" }, `${(alt.score * 100).toFixed(1)}%`),
        rank === 0 && alt.checkpoint.version_id === ckpt.version_id ? el("span", { class: "chosen" }, " the answer") : null,
        el("div", { class: "hint" }, `${alt.sampler}, ${alt.steps} steps, CFG ${alt.cfg_scale}, ${alt.width}×${alt.height}`),
      ),
    ),
  );

  const evidence = $("evidence");
  evidence.replaceChildren();
  for (const item of answer.evidence) {
    const figure = el("figure", { class: "shot" });
    const url = httpsUrl(item.url);
    if (url) figure.append(image(url, "catalogue sample image", "no-shot"));
    figure.append(
      el(
        "figcaption",
        {},
        el("span", { class: "sim" }, `similarity ${item.similarity.toFixed(2)}`),
        " ",
        link(civitaiImage(item.image_id), "image"),
        " · ",
        link(civitaiModel(item.model_id, item.version_id), "model"),
        el("p", { class: "evidence-prompt" }, item.prompt),
      ),
    );
    evidence.append(figure);
  }
  if (!answer.evidence.length) evidence.append(el("p", { class: "hint" }, "No catalogue example is close enough."));

  $("raw").textContent = JSON.stringify(api, null, 2);
  $("results").hidden = false;
}

async function ask() {
  const prompt = $("prompt").value;
  if (!prompt.trim()) {
    showError("Write a prompt first.");
    $("prompt").focus();
    return;
  }
  showError("");
  const button = $("go");
  button.disabled = true;
  $("status").textContent = "Choosing…";
  $("results").setAttribute("aria-busy", "true");
  try {
    const body = request(Object.keys(FORMATS));
    const answer = await call("POST", "/select", body);
    current = { request: body, answer };
    render(answer);
    $("status").textContent = "";
    const url = new URL(window.location.href);
    url.search = new URLSearchParams({ prompt }).toString();
    history.replaceState(null, "", url);
    $("results").focus({ preventScroll: false });
  } catch (error) {
    $("status").textContent = "";
    if (error.status === 401) askForKey("The key was refused or is missing; enter it again.");
    showError(error.message || String(error));
  } finally {
    button.disabled = false;
    $("results").removeAttribute("aria-busy");
  }
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = el("textarea", { "aria-hidden": "true", class: "offscreen" });
  area.value = text;
  document.body.append(area);
  area.select();
  document.execCommand("copy");
  area.remove();
}

async function copyPayload(format) {
  if (!current) return;
  const payload = current.answer.payloads && current.answer.payloads[format];
  if (!payload) return;
  try {
    await copyText(JSON.stringify(payload, null, 2));
    $("copy-status").textContent = `${FORMATS[format]} payload copied.`;
  } catch (error) {
    $("copy-status").textContent = `Could not copy: ${error.message || error}`;
  }
}

async function generate() {
  if (!current) return;
  const out = $("generated");
  out.replaceChildren(el("p", { class: "hint" }, "Generating…"));
  try {
    const { formats, ...body } = current.request; // payloads are not needed to generate
    const result = await call("POST", "/generate", body);
    out.replaceChildren(
      ...(result.images || []).map((src) => {
        const img = el("img", { alt: "generated image" });
        const url = String(src);
        if (url.startsWith("data:image/png;base64,") || httpsUrl(url) || url.startsWith("/")) img.src = url;
        return img;
      }),
      // what the generator left out (a VAE it lacks), as text: catalogue names are data
      ...(result.notes || []).map((note) => el("p", { class: "hint" }, String(note))),
    );
  } catch (error) {
    out.replaceChildren(el("p", { class: "error" }, error.message || String(error)));
  }
}

// --- start -----------------------------------------------------------------------------------------

async function start() {
  $("ask").addEventListener("submit", (event) => {
    event.preventDefault();
    ask();
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ask();
    }
  });
  for (const button of document.querySelectorAll("#copy-row button[data-format]")) {
    button.addEventListener("click", () => copyPayload(button.dataset.format));
  }
  $("generate").addEventListener("click", generate);
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, $("key").value);
    $("key").value = "";
    $("key-form").hidden = true;
    await boot();
  });
  await boot();
}

async function boot() {
  showError("");
  try {
    const health = await call("GET", "/health");
    if (health.auth_required && !sessionStorage.getItem(KEY_STORAGE)) {
      askForKey();
      return;
    }
    await loadInfo();
  } catch (error) {
    if (error.status === 401) {
      sessionStorage.removeItem(KEY_STORAGE);
      askForKey("The key was refused; enter it again.");
      return;
    }
    showError(error.message || String(error));
    return;
  }
  const shared = new URLSearchParams(window.location.search).get("prompt");
  if (shared && shared.trim()) {
    $("prompt").value = shared;
    await ask();
  } else {
    $("prompt").focus();
  }
}

document.addEventListener("DOMContentLoaded", start);

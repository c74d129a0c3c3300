// shoprec storefront: plain JS over the HTTP API, no build step.
// Hash routes (#/, #/search/QUERY, #/item/ID, #/user/ID, #/dashboard[/SURFACE]) keep every view
// linkable and testable; the dashboard lives in dashboard.js.
// All catalog text goes in through textContent, never innerHTML: product data is not trusted.
"use strict";

const view = document.getElementById("view");
const KEY_STORE = "shoprec.key";

// ---------------------------------------------------------------- helpers
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function apiKey() {
  return sessionStorage.getItem(KEY_STORE);
}

function authHeaders() {
  const key = apiKey();
  return key ? { "X-API-Key": key } : {};
}

class ApiFailure extends Error {}

// A 401 shows the key bar: with only SHOPREC_API_KEY set that happens on a shopper's view (their
// feed and history are private), with a read key on every view. The key lives in this tab only.
async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (response.status === 401) {
    document.getElementById("key-bar").hidden = false;
  }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    throw new ApiFailure((body && body.detail) || `${response.status} ${response.statusText}`);
  }
  return body;
}

// Photos are plain <img> tags unless a key is needed: then they are fetched with the key.
function setImage(img, url) {
  if (!url) {
    img.replaceWith(el("div", { class: "photo placeholder", text: "no photo" }));
    return;
  }
  if (!apiKey()) {
    img.src = url;
    return;
  }
  fetch(url, { headers: authHeaders() })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(r.statusText))))
    .then((blob) => { img.src = URL.createObjectURL(blob); })
    .catch(() => img.replaceWith(el("div", { class: "photo placeholder", text: "no photo" })));
}

function photo(url, alt, cls = "photo") {
  const img = el("img", { class: cls, alt, loading: "lazy" });
  setImage(img, url);
  return img;
}

function price(value) {
  if (value === null || value === undefined) return "";
  return Number(value).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

// ---------------------------------------------------------------- building blocks
function card(item) {
  return el("a", { class: "card", href: `#/item/${encodeURIComponent(item.id)}`, "data-id": item.id },
    photo(item.image_url, item.title),
    el("div", { class: "card-body" },
      el("div", { class: "card-title", text: item.title }),
      el("div", { class: "card-meta" },
        item.category ? el("span", { class: "tag", text: item.category }) : null,
        item.price !== null && item.price !== undefined ? el("span", { class: "price", text: price(item.price) }) : null),
      item.reason ? el("div", { class: "reason", text: item.reason }) : null));
}

function section(id, title, note) {
  const grid = el("div", { class: "grid" }, el("p", { class: "muted", text: "Loading…" }));
  const node = el("section", { id, class: "shelf" },
    el("div", { class: "shelf-head" }, el("h2", { text: title }), note ? el("span", { class: "muted", text: note }) : null),
    grid);
  return { node, grid };
}

function fill(grid, results, empty = "Nothing to show yet.") {
  grid.replaceChildren(...(results.length ? results.map(card) : [el("p", { class: "muted", text: empty })]));
}

function failure(grid, error) {
  grid.replaceChildren(el("p", { class: "error", text: error.message }));
}

async function shelf(target, id, title, note, load, empty) {
  const { node, grid } = section(id, title, note);
  target.append(node);
  try {
    fill(grid, (await load()).results, empty);
  } catch (error) {
    failure(grid, error);
  }
}

// ---------------------------------------------------------------- views
async function homeView() {
  view.replaceChildren(el("div", { class: "intro" },
    el("h1", { text: "Find products by words or by photo" }),
    el("p", { class: "muted", text: "Search in Chinese or English, upload a photo, open a product to see what is " +
      "similar and what goes with it, or open a shopper to see their feed." })));
  // /trending is a catalog read: open whenever the catalog is, unlike a shopper's feed.
  await shelf(view, "feed", "Popular now", "what a new visitor sees first", () => api("/trending?k=12"));
}

async function searchView(query, image) {
  const label = image ? (query ? `“${query}” + your photo` : "your photo") : `“${query}”`;
  view.replaceChildren(el("h1", {}, "Results for ", el("span", { class: "accent", text: label })));
  const form = new FormData();
  if (query) form.append("q", query);
  if (image) form.append("image", image);
  await shelf(view, "results", "Matches", null, () => api("/search?k=12", { method: "POST", body: form }),
    "No product matches this search.");
}

async function itemView(itemId) {
  view.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
  let item;
  try {
    item = await api(`/items/${encodeURIComponent(itemId)}`);
  } catch (error) {
    view.replaceChildren(el("h1", { text: "Product not found" }), el("p", { class: "error", text: error.message }));
    return;
  }
  const facts = el("dl", { class: "facts" });
  const addFact = (name, value) => { if (value) facts.append(el("dt", { text: name }), el("dd", { text: value })); };
  addFact("Category", item.category);
  addFact("Brand", item.brand);
  for (const [name, value] of Object.entries(item.attributes || {})) addFact(name, value);

  const modality = el("select", { id: "modality", "aria-label": "Compare by" },
    el("option", { value: "joint", text: "words + photo" }),
    el("option", { value: "image", text: "photo only" }),
    el("option", { value: "colour", text: "colour" }),
    el("option", { value: "text", text: "words only" }));

  view.replaceChildren(el("article", { id: "product", class: "product", "data-id": item.id },
    photo(item.image_url, item.title, "hero"),
    el("div", { class: "product-info" },
      el("h1", { text: item.title }),
      el("div", { class: "product-price" },
        el("span", { class: "price big", text: price(item.price) }),
        el("span", { class: item.in_stock === false ? "stock out" : "stock", text: item.in_stock === false ? "out of stock" : "in stock" })),
      item.description ? el("p", { class: "description", text: item.description }) : null,
      facts,
      el("p", { class: "muted small", text: `id ${item.id}` }))));

  const similar = section("similar", "Similar products", null);
  similar.node.querySelector(".shelf-head").append(el("label", { class: "muted small" }, "compare by ", modality));
  const loadSimilar = async () => {
    try {
      fill(similar.grid, (await api(`/items/${encodeURIComponent(itemId)}/similar?k=6&modality=${modality.value}`)).results);
    } catch (error) {
      failure(similar.grid, error);
    }
  };
  modality.addEventListener("change", loadSimilar);
  view.append(similar.node);
  await Promise.all([
    loadSimilar(),
    shelf(view, "complementary", "Goes well with", "bought together or completes the look",
      () => api(`/items/${encodeURIComponent(itemId)}/complementary?k=6`)),
  ]);
}

function historyRow(event) {
  const when = new Date(event.ts);
  return el("li", { class: "event" },
    event.image_url ? photo(event.image_url, event.title || event.item_id, "thumb") : el("div", { class: "thumb" }),
    el("a", { href: `#/item/${encodeURIComponent(event.item_id)}`, text: event.title || event.item_id }),
    el("span", { class: `badge ${event.type}`, text: event.type }),
    el("time", { datetime: event.ts, text: when.toLocaleString() }));
}

async function userView(userId) {
  document.getElementById("user-id").value = userId;
  view.replaceChildren(el("h1", {}, "Shopper ", el("span", { class: "accent", text: userId })));
  const columns = el("div", { class: "user-columns" });
  const feedColumn = el("div");
  const historyBox = el("ol", { class: "events" }, el("li", { class: "muted", text: "Loading…" }));
  columns.append(feedColumn, el("aside", { id: "history", class: "history" }, el("h2", { text: "History" }), historyBox));
  view.append(columns);
  const loadHistory = api(`/users/${encodeURIComponent(userId)}/history?limit=30`).then((h) => {
    historyBox.replaceChildren(...(h.events.length ? h.events.map(historyRow)
      : [el("li", { class: "muted", text: "No history yet: the feed is a cold start." })]));
  }).catch((error) => historyBox.replaceChildren(el("li", { class: "error", text: error.message })));
  await Promise.all([
    shelf(feedColumn, "feed", "Recommended for this shopper", null,
      () => api(`/users/${encodeURIComponent(userId)}/recommendations?k=12`)),
    loadHistory,
  ]);
}

// ---------------------------------------------------------------- routing
async function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [name, ...rest] = hash.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  window.scrollTo(0, 0);
  if (name === "item" && arg) await itemView(arg);
  else if (name === "user" && arg) await userView(arg);
  else if (name === "dashboard") await dashboardView(arg || "all");
  else if (name === "search" && arg) {
    document.getElementById("q").value = arg;
    await searchView(arg, null);
  }
  else await homeView();
  document.body.dataset.ready = hash || "home";
}

document.getElementById("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const query = document.getElementById("q").value.trim();
  const input = document.getElementById("image");
  const image = input.files && input.files[0];
  if (image) {
    // A photo cannot live in the URL: show its results in place.
    document.body.dataset.ready = "";
    searchView(query, image).then(() => { document.body.dataset.ready = "search-photo"; });
    input.value = "";
    document.getElementById("image-label").textContent = "Photo";
  } else if (query) {
    location.hash = `#/search/${encodeURIComponent(query)}`;
  }
});

document.getElementById("image").addEventListener("change", (event) => {
  const file = event.target.files[0];
  document.getElementById("image-label").textContent = file ? file.name.slice(0, 18) : "Photo";
});

document.getElementById("user-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const userId = document.getElementById("user-id").value.trim();
  if (userId) location.hash = `#/user/${encodeURIComponent(userId)}`;
});

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORE, document.getElementById("key").value.trim());
  document.getElementById("key-bar").hidden = true;
  route();
});

window.addEventListener("hashchange", () => {
  document.body.dataset.ready = "";
  route();
});
route();

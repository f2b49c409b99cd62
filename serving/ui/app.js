// The customer-360 page: plain DOM and fetch against the service's own JSON API (same origin,
// so the same key or loopback rule applies). Every value is put in with textContent, never as
// HTML. Formats: missing values show as an en dash; churn risk as a percentage with one
// decimal; money with two decimals; NPS and CSAT with one.
"use strict";

const DASH = "\u2013";

function missing(value) {
  return value === null || value === undefined || (typeof value === "number" && !isFinite(value));
}
function fixed(value, digits) {
  return missing(value) ? DASH : Number(value).toFixed(digits);
}
function percent(value) {
  return missing(value) ? DASH : (Number(value) * 100).toFixed(1) + " %";
}
function text(value) {
  return missing(value) || value === "" ? DASH : String(value);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
function field(scope, name, value) {
  for (const node of scope.querySelectorAll(`[data-field="${name}"]`)) node.textContent = value;
}
function fill(id, rows, empty) {
  const target = document.getElementById(id);
  target.replaceChildren(...rows);
  if (!rows.length && empty) target.append(el("li", { class: "empty" }, empty));
}

class Problem extends Error {
  constructor(status, body) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.title = body.title || `HTTP ${status}`;
  }
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Problem(response.status, body);
  return body;
}

function showError(id, error) {
  const node = document.getElementById(id);
  node.hidden = !error;
  node.textContent = error ? `${error.title || "Error"}: ${error.message}` : "";
}

// -- the customer --------------------------------------------------------------------------

function renderProfile(section, profile) {
  const f = profile.features || {};
  field(section, "in_model", profile.in_model ? "in the model" : "known from events only");
  field(section, "segment", text(profile.segment));
  field(section, "journey_stage", text(profile.journey_stage));
  field(section, "churn_risk", percent(profile.churn_risk));
  field(section, "clv", fixed(f.clv, 2));
  field(section, "nps", fixed(f.nps, 1));
  field(section, "csat", fixed(f.csat, 1));
  field(section, "recency_days", fixed(f.recency_days, 0));
  field(section, "frequency", fixed(f.frequency, 0));
  field(section, "monetary", fixed(f.monetary, 2));
  field(section, "avg_order_value", fixed(f.avg_order_value, 2));
  field(section, "tenure_days", fixed(f.tenure_days, 0));
  field(section, "last_purchase_at", text(f.last_purchase_at));
  fill("recent-views", profile.recent_views.map((id) => el("li", {}, id)), "none");
  fill("cart", profile.cart.map((id) => el("li", {}, id)), "empty");
}

function clearProfile(section) {
  for (const name of ["in_model", "segment", "journey_stage", "churn_risk", "clv", "nps",
    "csat", "recency_days", "frequency", "monetary", "avg_order_value", "tenure_days",
    "last_purchase_at"]) field(section, name, name === "in_model" ? "" : DASH);
  fill("recent-views", [], "none");
  fill("cart", [], "empty");
}

function renderRecommendations(section, body) {
  field(section, "strategy", body.strategy);
  const rows = body.items.map((item, i) =>
    el("tr", { "data-item": item.item_id },
      el("td", { class: "num" }, i + 1), el("td", {}, item.item_id), el("td", {}, text(item.title)),
      el("td", { class: "num" }, fixed(item.score, 3)), el("td", {}, item.reason)));
  fill("recommendations", rows);
  if (!rows.length) fill("recommendations", [el("tr", {}, el("td", { colspan: 5, class: "empty" }, "none"))]);
}

function renderOffers(body) {
  const rows = body.offers.map((offer) =>
    el("tr", { "data-offer": offer.offer_id },
      el("td", {}, offer.offer_id), el("td", {}, offer.type), el("td", {}, offer.title),
      el("td", { class: "num" }, missing(offer.discount_pct) ? DASH : `${offer.discount_pct} %`),
      el("td", { class: "num" }, fixed(offer.score, 2)), el("td", {}, offer.reason),
      el("td", {}, offer.items.length ? offer.items.join(", ") : DASH)));
  fill("offers", rows.length ? rows
    : [el("tr", {}, el("td", { colspan: 7, class: "empty" }, "no offer for this customer"))]);
}

function renderAction(action) {
  return [el("div", { class: "title", "data-action": action.action_id }, action.title),
    el("div", {}, `${action.type} · expected value ${fixed(action.expected_value, 2)}`),
    el("div", { class: "reason" }, action.reason)];
}

function renderNba(body) {
  document.getElementById("nba").replaceChildren(...renderAction(body.action));
  fill("nba-alternatives", body.alternatives.map((a) =>
    el("li", { "data-action": a.action_id }, `${a.title} (${fixed(a.expected_value, 2)}): ${a.reason}`)),
  "none");
}

async function lookUp(customerId) {
  const section = document.getElementById("customer");
  section.hidden = false;
  section.removeAttribute("data-loaded");
  field(section, "customer_id", customerId);
  const id = encodeURIComponent(customerId);
  const [profile, recs, offers, nba] = await Promise.allSettled([
    api(`/v1/customers/${id}`),
    api(`/v1/customers/${id}/recommendations?context=home&k=10`),
    api(`/v1/customers/${id}/offers?k=3`),
    api(`/v1/customers/${id}/next-best-action`),
  ]);
  const errors = [];
  if (profile.status === "fulfilled") renderProfile(section, profile.value);
  else {
    clearProfile(section);
    errors.push(profile.reason.status === 404
      ? { title: "Not in the store", message: "no profile yet: answers below are a new customer's" }
      : profile.reason);
  }
  if (recs.status === "fulfilled") renderRecommendations(section, recs.value);
  else errors.push(recs.reason);
  if (offers.status === "fulfilled") renderOffers(offers.value);
  else errors.push(offers.reason);
  if (nba.status === "fulfilled") renderNba(nba.value);
  else errors.push(nba.reason);
  showError("customer-error", errors.length ? {
    title: errors.map((e) => e.title).join(", "), message: errors.map((e) => e.message).join("; "),
  } : null);
  section.setAttribute("data-loaded", customerId);
}

// -- the overview --------------------------------------------------------------------------

function bars(id, counts) {
  const values = Object.values(counts);
  const most = Math.max(1, ...values);
  const rows = Object.entries(counts).map(([name, n]) =>
    el("tr", { "data-name": name }, el("th", {}, name), el("td", { class: "num" }, n),
      el("td", { class: "bar" }, el("div", { class: "fill", style: `width: ${(100 * n) / most}%` }))));
  const target = document.getElementById(id);
  target.replaceChildren(...rows);
  if (!rows.length) target.append(el("tr", {}, el("td", { class: "empty" }, "not in this version")));
}

function flatten(prefix, value, out) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [key, inner] of Object.entries(value)) flatten(prefix ? `${prefix}.${key}` : key, inner, out);
  } else if (typeof value === "number") out.push([prefix, fixed(value, 4)]);
  else if (typeof value === "string" || typeof value === "boolean") out.push([prefix, String(value)]);
  return out;
}

async function loadOverview() {
  const section = document.getElementById("overview");
  try {
    const [overview, model] = await Promise.all([api("/v1/overview"), api("/v1/model")]);
    field(document, "model_version", model.version);
    field(section, "n_customers", overview.n_customers);
    field(section, "n_items", overview.n_items);
    field(section, "as_of", overview.as_of.slice(0, 10));
    bars("segments", overview.segments);
    bars("stages", overview.journey_stages);
    const metrics = flatten("", model.metrics, []);
    document.getElementById("metrics").replaceChildren(...metrics.map(([name, value]) =>
      el("tr", { "data-metric": name }, el("th", {}, name), el("td", { class: "num" }, value))));
    showError("overview-error", null);
  } catch (error) {
    field(document, "model_version", "none");
    showError("overview-error", error);
  }
  section.setAttribute("data-loaded", "true");
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("lookup");
  const input = document.getElementById("customer-id");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const customerId = input.value.trim();
    if (!customerId) return;
    history.replaceState(null, "", `?customer=${encodeURIComponent(customerId)}`);
    lookUp(customerId);
  });
  loadOverview();
  const wanted = new URLSearchParams(location.search).get("customer");
  if (wanted) {
    input.value = wanted;
    lookUp(wanted);
  }
});

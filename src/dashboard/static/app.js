// The Airqube dashboard page: reads the token from the URL fragment, then polls the JSON API on this origin.
// Every value from the API is put in the page as text (textContent), never as HTML: error reasons and evidence
// come from untrusted providers.
import { barChart, destroyCharts } from "./charts.js";

const POLL_MS = 5000;
const PAGE = 50;
const COLORS = { running: "#3b82f6", finished: "#16a34a", failed: "#dc2626", abandoned: "#9ca3af", refused: "#f59e0b" };

// the token: from the fragment once (then removed from the address bar and history), kept for this tab only
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) {
  sessionStorage.setItem("airqube-token", fromHash);
  history.replaceState(null, "", location.pathname);
}
const token = sessionStorage.getItem("airqube-token");

// `shown`: the data each view was last drawn from (an unchanged answer is not drawn again, so that a chart
// under the cursor, a scroll position or a selection stays put)
const state = { view: "provider", offsets: { provider: 0, requestor: 0 }, timer: undefined, shown: {} };

function el(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") element.textContent = String(value);
    else if (key === "on") for (const [event, fn] of Object.entries(value)) element.addEventListener(event, fn);
    else element.setAttribute(key, String(value));
  }
  for (const child of children.flat()) if (child !== undefined && child !== null) element.append(child);
  return element;
}

function table(headers, rows, attrs = {}) {
  return el(
    "table",
    attrs,
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        headers.map((h) => el("th", { text: h })),
      ),
    ),
    el(
      "tbody",
      {},
      rows.length ? rows : [el("tr", {}, el("td", { colspan: headers.length, class: "muted", text: "none" }))],
    ),
  );
}

function cell(value, cls) {
  return el("td", { class: cls, text: value ?? "" });
}

function card(label, value, id) {
  return el(
    "div",
    { class: "card", "data-card": id },
    el("div", { class: "label", text: label }),
    el("div", { class: "value", text: value }),
  );
}

function short(id, n = 12) {
  return typeof id === "string" && id.length > n + 3 ? `${id.slice(0, n)}…` : (id ?? "");
}

/** Wei (decimal string) as GLM with up to 6 decimals. */
function glm(wei) {
  if (wei === null || wei === undefined) return "–";
  const value = BigInt(wei);
  const whole = value / 10n ** 18n;
  const frac = (value % 10n ** 18n).toString().padStart(18, "0").slice(0, 6).replace(/0+$/, "");
  return `${whole}${frac ? `.${frac}` : ""} GLM`;
}

/** An offer's price: wei strings as GLM, start plus per second. */
function priceText(price) {
  try {
    return `${glm(price.start)} + ${glm(price.perSecond)}/s`;
  } catch {
    return "–";
  }
}

function time(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? (iso ?? "") : date.toLocaleString();
}

function duration(ms) {
  if (!Number.isFinite(ms)) return "";
  return ms < 1000 ? `${ms} ms` : ms < 120_000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 60_000).toFixed(1)} min`;
}

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
  if (response.status === 401)
    throw new Error("No access: open the URL printed by `airqube dashboard` (it carries the token).");
  const body = await response.json();
  if (!response.ok)
    throw new Error(`${body.error?.code ?? response.status}: ${body.error?.message ?? "request failed"}`);
  return body;
}

function pager(view, page) {
  const { offset, limit, total } = page;
  return el(
    "div",
    { class: "pagerbar" },
    el("button", {
      type: "button",
      class: "pager",
      disabled: offset === 0,
      text: "‹ newer",
      on: { click: () => move(view, -limit) },
    }),
    el("span", { class: "muted", text: total ? `${offset + 1}–${Math.min(total, offset + limit)} of ${total}` : "0" }),
    el("button", {
      type: "button",
      class: "pager",
      disabled: offset + limit >= total,
      text: "older ›",
      on: { click: () => move(view, limit) },
    }),
  );
}

function move(view, delta) {
  state.offsets[view] = Math.max(0, state.offsets[view] + delta);
  refresh();
}

function renderProvider(data) {
  const s = data.summary.byState;
  const status = data.status;
  const running = (s.accepted ?? 0) + (s.running ?? 0) + (s.committed ?? 0);
  const { bucketMs, buckets } = data.timeline;
  const chart = barChart({
    id: "provider-chart",
    title: "Jobs by acceptance time and state, and qubes refused, stacked",
    xTitle: "accepted",
    labels: buckets.map((b) => `${time(b.start)} + ${duration(bucketMs)}`),
    // each bar in the middle of its bucket
    x: buckets.map((b) => (Date.parse(b.start) + bucketMs / 2) / 1000),
    time: true,
    step: bucketMs / 1000,
    series: ["running", "finished", "failed", "abandoned", "refused"].map((key) => ({
      key,
      label: key,
      color: COLORS[key],
      values: buckets.map((b) => b[key] ?? 0),
    })),
    stacked: true,
    counts: true,
  });
  return [
    el(
      "div",
      { class: "cards" },
      card("jobs", String(data.summary.jobs), "jobs"),
      card("running", String(running), "running"),
      card("finished", String(s.revealed ?? 0), "finished"),
      card("failed / abandoned", `${s.failed ?? 0} / ${s.abandoned ?? 0}`, "failed"),
      card("refused", String(data.refusals.total), "refused"),
      card("earned (revealed jobs)", glm(data.summary.earnedWei), "earned"),
      card("stake at risk", glm(data.stake.atRiskWei), "stake"),
      card(
        "capacity in use",
        status ? `${status.running ?? 0} / ${status.maxConcurrent ?? "?"}` : "agent not seen",
        "capacity",
      ),
      card(
        "agent",
        status ? `${status.alive ? "running" : "stopped"}${status.draining ? " (draining)" : ""}` : "–",
        "agent",
      ),
    ),
    el("h2", { text: `Jobs over time (by acceptance, ${duration(data.timeline.bucketMs)} buckets)` }),
    chart,
    el("h2", { text: "Failures and abandoned jobs, by reason" }),
    table(
      ["code", "jobs", "last reason", "last at"],
      data.failures.map((f) =>
        el("tr", {}, cell(f.code, "mono"), cell(String(f.count)), cell(f.lastReason), cell(time(f.lastAt))),
      ),
    ),
    el("h2", { text: "Refused before admission, by reason" }),
    table(
      ["code", "refusals", "last reason", "last at"],
      data.refusals.byCode.map((r) =>
        el(
          "tr",
          { "data-refusal": r.code },
          cell(r.code, "mono"),
          cell(String(r.count)),
          cell(r.lastReason),
          cell(time(r.lastAt)),
        ),
      ),
    ),
    el(
      "details",
      { class: "refusals", "data-qube": "refusals" },
      el("summary", { text: `Latest refusals (${data.refusals.recent.length} of ${data.refusals.total} kept)` }),
      table(
        ["at", "stage", "requestor", "qube", "code", "reason"],
        data.refusals.recent.map((r) =>
          el(
            "tr",
            {},
            cell(time(r.at)),
            cell(r.stage),
            cell(short(r.requestor), "mono"),
            cell(short(r.qubeId, 16), "mono"),
            cell(r.code, "mono"),
            cell(r.reason),
          ),
        ),
      ),
    ),
    el("h2", { text: "Escape suite per tier" }),
    data.escapeSuite.length === 0
      ? el("p", { class: "muted", text: "No escape-suite report in the probe cache." })
      : data.escapeSuite.map(matrix),
    el("h2", { text: "Jobs" }),
    pager("provider", data.jobs),
    table(
      ["accepted", "job", "qube", "requestor", "state", "price", "usage", "error"],
      data.jobs.items.map((j) =>
        el(
          "tr",
          { "data-job": j.jobId },
          cell(time(j.createdAt)),
          cell(short(j.jobId), "mono"),
          cell(short(j.qubeId, 16), "mono"),
          cell(short(j.requestor), "mono"),
          cell(j.state, `state-${j.state}`),
          cell(glm(j.priceWei)),
          cell(j.usage ? `${j.usage.cpuMs} ms CPU, ${(j.usage.maxMemoryBytes / 1048576).toFixed(1)} MiB` : ""),
          cell(j.errorCode ? `${j.errorCode}: ${j.errorReason ?? ""}` : (j.errorReason ?? "")),
        ),
      ),
    ),
    earningsSection(data.earnings),
    el("h2", { text: "Escrow seats" }),
    table(
      ["job", "state", "stake", "price", "updated"],
      data.stake.seats.map((seat) =>
        el(
          "tr",
          {},
          cell(short(seat.jobId, 18), "mono"),
          cell(seat.state, `state-${seat.state}`),
          cell(glm(seat.stakeWei)),
          cell(glm(seat.priceWei)),
          cell(time(seat.updatedAt)),
        ),
      ),
    ),
    el("p", { class: "muted" }, data.notes.join(" ")),
  ];
}

/** Credits, withdrawals and what is left to withdraw, as the chain says (or why it cannot be read). */
function earningsSection(e) {
  const head = el("h2", { text: "Earnings on chain" });
  if (!e) return [head, el("p", { class: "muted", text: "not read yet" })];
  if (!e.paid) return [head, el("p", { class: "muted", "data-earnings": "unpaid", text: e.note })];
  const where = el("p", {
    class: "muted",
    text: `payout ${e.payout ?? "unknown"}, escrow ${e.escrow}${e.chainId ? ` on chain ${e.chainId}` : ""} (${e.rpcUrl}), read ${time(e.readAt)}`,
  });
  if (e.error)
    return [
      head,
      where,
      el("p", { class: "message", "data-earnings": "error", text: `${e.error.code}: ${e.error.message}` }),
    ];
  return [
    head,
    where,
    el(
      "div",
      { class: "cards", "data-earnings": "paid" },
      card(`credited (${e.creditCount})`, glm(e.totalCreditedWei), "credited"),
      card(`withdrawn (${e.withdrawalCount})`, glm(e.totalWithdrawnWei), "withdrawn"),
      card("withdrawable", glm(e.withdrawableWei), "withdrawable"),
    ),
    creditsChart(e.credits),
    table(
      ["credit to job", "amount", "block", "tx"],
      e.credits.map((c) =>
        el(
          "tr",
          { "data-credit": c.jobId },
          cell(short(c.jobId, 18), "mono"),
          cell(glm(c.amountWei)),
          cell(String(c.block)),
          cell(short(c.tx, 18), "mono"),
        ),
      ),
    ),
    table(
      ["withdrawal", "block", "tx"],
      e.withdrawals.map((w) =>
        el(
          "tr",
          { "data-withdrawal": w.tx },
          cell(glm(w.amountWei)),
          cell(String(w.block)),
          cell(short(w.tx, 18), "mono"),
        ),
      ),
    ),
  ];
}

/** The newest credits as bars, oldest left, in GLM or (when all are under 1 GLM) in milli-GLM. */
function creditsChart(credits) {
  const newest = credits.slice(0, 24).reverse();
  const milli = newest.every((c) => BigInt(c.amountWei) < 10n ** 18n);
  const scale = milli ? 10n ** 12n : 10n ** 15n;
  const unit = milli ? "mGLM" : "GLM";
  return barChart({
    id: "credits-chart",
    title: `Credits by the escrow, in ${unit}, oldest left`,
    xTitle: "credit",
    labels: newest.map((c) => `job ${short(c.jobId, 18)}: ${glm(c.amountWei)} (block ${c.block})`),
    ticks: newest.map((c) => `#${c.block}`),
    series: [
      {
        key: "credited",
        label: "credited",
        color: COLORS.finished,
        values: newest.map((c) => Number(BigInt(c.amountWei) / scale) / 1000),
      },
    ],
    unit,
  });
}

function matrix(m) {
  const verdicts = ["pass", "fail", "inconclusive", "skipped"];
  return el(
    "div",
    { class: "tier", "data-tier": m.tier },
    el("h3", {
      text: `${m.tier}: ${m.summary.pass} pass, ${m.summary.fail} fail, ${m.summary.inconclusive} inconclusive, ${m.summary.skipped} skipped — last run ${time(m.startedAt)}`,
    }),
    el("p", { class: "muted mono", text: `${m.suite} ${m.suiteVersion}` }),
    table(
      ["#", "probe", "severity", ...verdicts],
      m.rows.map((r) =>
        el(
          "tr",
          { "data-probe": r.id },
          cell(String(r.id)),
          cell(r.title),
          cell(r.severity),
          verdicts.map((v) =>
            r.verdict === v ? el("td", { class: `verdict verdict-${v}`, title: r.evidence, text: "●" }) : el("td", {}),
          ),
        ),
      ),
      { class: "matrix" },
    ),
  );
}

function renderRequestor(data) {
  const s = data.summary.byState;
  const items = data.qubes.items;
  return [
    el(
      "div",
      { class: "cards" },
      card("qubes", String(data.summary.qubes), "qubes"),
      card("verified", String(s.verified ?? 0), "verified"),
      card("no consensus", String(s["no-consensus"] ?? 0), "no-consensus"),
      card("failed / interrupted", `${s.failed ?? 0} / ${s.interrupted ?? 0}`, "failed"),
      card("running", String(s.dispatching ?? 0), "dispatching"),
      card("escrow open / settled", `${data.escrow.open} / ${data.escrow.settled}`, "escrow"),
    ),
    el("h2", { text: "Time per qube (newest right)" }),
    requestorChart([...items].reverse()),
    el("h2", { text: "Qubes" }),
    pager("requestor", data.qubes),
    items.length === 0 ? el("p", { class: "muted", text: "No qube in the journal." }) : items.map(qube),
    el("h2", { text: "Reputation of known providers" }),
    table(
      ["provider", "valid in a row", "wrong", "marked until"],
      data.reputation.map((r) =>
        el(
          "tr",
          { "data-provider": r.provider },
          cell(r.provider, "mono"),
          cell(String(r.consecutiveValid)),
          cell(String(r.wrong)),
          cell(
            r.marked ? time(r.markedUntil) : r.markedUntil ? `expired ${time(r.markedUntil)}` : "",
            r.marked ? "verdict-fail" : "",
          ),
        ),
      ),
    ),
  ];
}

/** Time per qube, one bar each (newest right), coloured by how it ended: verified, still running, or not. */
function requestorChart(qubes) {
  const outcome = (q) => (q.state === "verified" ? "finished" : q.state === "dispatching" ? "running" : "failed");
  const seconds = (q) => Math.round(q.durationMs / 100) / 10;
  return barChart({
    id: "requestor-chart",
    title: "Time per qube in seconds, newest right",
    xTitle: "qube",
    labels: qubes.map((q) => `${q.qubeId} (${q.state})`),
    ticks: qubes.map((q) => short(q.qubeId, 6)),
    series: [
      ["finished", "verified"],
      ["running", "dispatching"],
      ["failed", "failed or no consensus"],
    ].map(([key, label]) => ({
      key,
      label,
      color: COLORS[key],
      values: qubes.map((q) => (outcome(q) === key ? seconds(q) : null)),
    })),
    unit: "s",
  });
}

function pills(list, kind) {
  return list.map((p) =>
    el("span", { class: `pill pill-${kind}`, title: p, text: short(typeof p === "string" ? p : p.provider, 14) }),
  );
}

function qube(q) {
  const g = q.groups;
  return el(
    "details",
    { class: "qube", "data-qube": q.qubeId },
    el(
      "summary",
      {},
      el("span", { class: "mono", text: short(q.qubeId, 20) }),
      el("span", { class: `state-${q.state}`, text: q.state }),
      el("span", { text: `${q.providers.length} providers` }),
      el("span", {
        text: `agreeing ${g.agreeing.length}, dissenting ${g.dissenting.length}, marked ${g.marked.length}`,
      }),
      el("span", { text: duration(q.durationMs) }),
      el("span", { text: q.costWei ? glm(q.costWei) : "unpaid" }),
      el("span", { class: "muted", text: time(q.createdAt) }),
    ),
    el(
      "div",
      {},
      el("p", { class: "mono", text: `qube ${q.qubeId}${q.outputsRoot ? `  root ${q.outputsRoot}` : ""}` }),
      q.reason ? el("p", { class: "muted", text: q.reason }) : null,
      el(
        "div",
        {},
        el("span", { class: "group" }, "agreeing: ", pills(g.agreeing, "agreeing")),
        el("span", { class: "group" }, "dissenting: ", pills(g.dissenting, "dissenting")),
        el("span", { class: "group" }, "marked: ", pills(g.marked, "marked")),
        el("span", { class: "group" }, "failed: ", pills(g.failed, "failed")),
      ),
      table(
        ["provider", "last state", "error"],
        q.providers.map((p) =>
          el("tr", {}, cell(p.provider, "mono"), cell(p.state, `state-${p.state}`), cell(p.error)),
        ),
      ),
      el("h4", { text: "Timeline (commit and reveal, as journalled)" }),
      el(
        "ol",
        { class: "timeline" },
        q.timeline.map((t) =>
          el("li", {
            text: `${time(t.at)}  ${t.event}${t.provider ? ` ${short(t.provider, 14)}` : ""}${t.detail ? ` (${t.detail})` : ""}`,
          }),
        ),
      ),
      q.escrow.length
        ? table(
            ["escrow job", "state", "price", "stake", "budget", "lock tx", "settle tx"],
            q.escrow.map((e) =>
              el(
                "tr",
                {},
                cell(short(e.jobId, 18), "mono"),
                cell(e.state, `state-${e.state}`),
                cell(glm(e.priceWei)),
                cell(glm(e.stakeWei)),
                cell(glm(e.budgetWei)),
                cell(short(e.lockTx, 14), "mono"),
                cell(short(e.settleTx, 14), "mono"),
              ),
            ),
          )
        : null,
      el(
        "p",
        {},
        el("button", {
          type: "button",
          class: "download",
          "data-evidence": q.qubeId,
          text: `Download evidence (${q.evidenceRecords} records)`,
          on: { click: () => download(q.qubeId) },
        }),
      ),
    ),
  );
}

async function download(qubeId) {
  try {
    const bundle = await api(`/api/evidence/${encodeURIComponent(qubeId)}`);
    const blob = new Blob([JSON.stringify(bundle, null, 2)], { type: "application/json" });
    const link = el("a", {
      href: URL.createObjectURL(blob),
      download: `evidence-${qubeId.replace(/[^A-Za-z0-9_-]/g, "_")}.json`,
    });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  } catch (error) {
    show(error.message);
  }
}

function renderNetwork(data) {
  const own = data.ownOffer;
  return [
    el("h2", { text: "This machine's provider" }),
    own
      ? table(
          ["peer", "tiers", "capacity", "price (start + per second)", "addresses", "agent"],
          [
            el(
              "tr",
              {},
              cell(own.peerId, "mono"),
              cell((own.tiers ?? []).join(", ")),
              cell(`${own.running} / ${own.maxConcurrent}`),
              cell(own.price ? priceText(own.price) : "–"),
              cell((own.addrs ?? []).join(" "), "mono"),
              cell(own.alive ? "running" : "stopped"),
            ),
          ],
        )
      : el("p", { class: "muted", text: "No provider agent has run in this data directory." }),
    el("h2", { text: "Offers seen on the network" }),
    data.offersSeen.length > 0
      ? table(
          ["provider", "tiers", "price (start + per second)", "max wall time", "free seats", "issued"],
          data.offersSeen.map((o) =>
            el(
              "tr",
              { "data-offer": o.provider },
              cell(o.provider, "mono"),
              cell(o.tiers.join(", ")),
              cell(priceText(o.price)),
              cell(duration(o.maxWallTimeMs)),
              cell(`${o.available} / ${o.maxConcurrent}`),
              cell(time(o.issuedAt)),
            ),
          ),
        )
      : el("p", {
          class: "muted",
          text: "No offer seen: no provider agent runs in this data directory (or it has seen no other provider yet).",
        }),
    data.offersSeenAt
      ? el("p", { class: "muted", text: `as this machine's provider saw them at ${time(data.offersSeenAt)}` })
      : "",
    el("h2", { text: "Devnet" }),
    data.devnet
      ? table(
          ["bootstrap", "chain", "escrow"],
          [
            el(
              "tr",
              {},
              cell(data.devnet.bootstrap, "mono"),
              cell(data.devnet.chainId ? `${data.devnet.chainId} ${data.devnet.rpcUrl}` : "no chain"),
              cell(data.devnet.escrow, "mono"),
            ),
          ],
        )
      : el("p", { class: "muted", text: "No devnet is running." }),
    el("h2", { text: "Providers this requestor used" }),
    table(
      ["provider", "qubes", "last seen", "valid in a row", "wrong", "marked"],
      data.providers.map((p) =>
        el(
          "tr",
          { "data-peer": p.peerId },
          cell(p.peerId, "mono"),
          cell(String(p.qubes)),
          cell(time(p.lastSeen)),
          cell(String(p.consecutiveValid)),
          cell(String(p.wrong)),
          cell(p.marked ? "yes" : "", p.marked ? "verdict-fail" : ""),
        ),
      ),
    ),
    el("p", { class: "muted", text: data.notes.join(" ") }),
  ];
}

function show(message) {
  const box = document.getElementById("message");
  box.textContent = message;
  box.hidden = !message;
}

const RENDER = { provider: renderProvider, requestor: renderRequestor, network: renderNetwork };

async function refresh() {
  clearTimeout(state.timer);
  const view = state.view;
  try {
    const offset = state.offsets[view];
    const query = offset !== undefined ? `?limit=${PAGE}&offset=${offset}` : "";
    const [data, earnings] = await Promise.all([
      api(`/api/${view}${query}`),
      // the chain is read by the server at most every 15 s; a failure here is shown in its section only
      view === "provider"
        ? api("/api/earnings").catch((error) => ({ paid: true, error: { code: "DASHBOARD", message: error.message } }))
        : undefined,
    ]);
    if (earnings) data.earnings = earnings;
    if (view !== state.view) return;
    const section = document.getElementById(view);
    const json = JSON.stringify(data);
    if (state.shown[view] !== json) {
      // keep open qubes (and a chart's numbers) open across polls
      const key = (d) => d.dataset.qube ?? d.id;
      const open = new Set([...section.querySelectorAll("details[open]")].map(key).filter(Boolean));
      const children = RENDER[view](data).flat();
      destroyCharts(section);
      section.replaceChildren(...children);
      for (const d of section.querySelectorAll("details")) if (open.has(key(d))) d.open = true;
      state.shown[view] = json;
    }
    section.dataset.loaded = "true";
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    show("");
  } catch (error) {
    show(error.message);
  }
  state.timer = setTimeout(refresh, POLL_MS);
}

function select(view) {
  state.view = view;
  for (const tab of document.querySelectorAll(".tab"))
    tab.setAttribute("aria-selected", String(tab.dataset.view === view));
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== view;
  if (location.hash !== `#${view}`) history.replaceState(null, "", `#${view}`);
  refresh();
}

for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => select(tab.dataset.view));
if (!token) show("No access token: open the URL printed by `airqube dashboard`.");
else
  select(["provider", "requestor", "network"].includes(location.hash.slice(1)) ? location.hash.slice(1) : "provider");

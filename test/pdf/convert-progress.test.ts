import { expect } from "chai";
import { convertProgress, heartbeatText } from "../../src/cli/convert-pdf-progress.js";
import type { ConvertEvent } from "../../src/pdf/convert.js";
import { printable } from "../../src/qube/printable.js";

const PEER = "12D3KooWAbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd";

/** A display writing into strings, with a clock the test moves. */
function capture(mode: { json?: boolean; tty?: boolean }) {
  const out: string[] = [];
  const err: string[] = [];
  let clock = 0;
  const view = convertProgress({
    json: Boolean(mode.json),
    tty: Boolean(mode.tty),
    out: { write: (text: string) => out.push(text) },
    err: { write: (text: string) => err.push(text) },
    now: () => clock,
  });
  return {
    view,
    out,
    err,
    tick: (ms: number) => {
      clock += ms;
    },
  };
}

const beat = (fields: Partial<Extract<ConvertEvent, { type: "heartbeat" }>> = {}): ConvertEvent => ({
  type: "heartbeat",
  phase: "rendering",
  elapsedMs: 3000,
  sent: 3,
  started: 3,
  committed: 1,
  revealed: 0,
  failed: 0,
  ...fields,
});

/** The events of an n-page conversion at k = 3 as convertPdf emits them. */
function conversion(pages: number): ConvertEvent[] {
  return [
    { type: "run", event: { type: "qubeSent", provider: PEER } },
    beat(),
    { type: "run", event: { type: "qubeCommitted", provider: PEER } },
    beat({ phase: "receiving", elapsedMs: 4000, committed: 3, revealed: 2 }),
    { type: "rendered", pages, agreeing: 3 },
    ...Array.from(
      { length: pages },
      (_, i): ConvertEvent => ({
        type: "page",
        page: i + 1,
        pages,
        width: 414,
        height: 583,
      }),
    ),
  ];
}

// every escape a hostile text might try: OSC (window title), CSI (clear screen, cursor up), C1 CSI, BEL,
// a bidirectional override, a carriage return that would overwrite the line
const HOSTILE = "\u001b]0;pwned\u0007\u001b[2J\u001b[1A\u009b31m\u202eevil\rfake line\n";
/** Any control or format character but the line feed: C0, DEL, C1, bidirectional overrides. */
const CONTROL = /(?!\n)[\p{Cc}\p{Cf}]/u;

describe("convert-pdf progress display", () => {
  it("shows the bytes of pixels arriving while the providers send them, and nothing implausible", () => {
    const receiving = { phase: "receiving" as const, committed: 3, revealed: 1 };
    const text = (fields: Record<string, unknown>) =>
      heartbeatText(beat({ ...receiving, ...fields }) as Extract<ConvertEvent, { type: "heartbeat" }>);
    expect(text({ receivingBytes: 47_395_635 })).to.equal(
      "all committed; receiving the pixels: 1/3 providers sent theirs (45.2 MiB of pixels arriving), 3 s",
    );
    expect(text({})).to.equal("all committed; receiving the pixels: 1/3 providers sent theirs, 3 s");
    for (const receivingBytes of [-1, 0.5, Number.NaN, 2 ** 60])
      expect(text({ receivingBytes })).to.equal("all committed; receiving the pixels: 1/3 providers sent theirs, 3 s");
  });

  it("one line per page, in order, page/total, on a terminal and in logs", () => {
    for (const tty of [true, false]) {
      const { view, err, tick } = capture({ tty });
      for (const event of conversion(7)) {
        tick(300);
        view.onProgress(event);
      }
      view.stop();
      const text = err.join("");
      const pages = [...text.matchAll(/page (\d+)\/(\d+): 414x583 px checked/g)].map((m) => `${m[1]}/${m[2]}`);
      expect(pages, `tty ${tty}`).to.deep.equal(["1/7", "2/7", "3/7", "4/7", "5/7", "6/7", "7/7"]);
      expect(text).to.include("rendered 7 pages; 3 providers agree bitwise");
      expect(text).to.include(
        tty ? "rendering on 3 providers: 3 started, 1 committed, 3 s" : "airqube: rendering on 3",
      );
      if (tty) {
        // the live status line is cleared before each permanent line and at the end: no status is left over
        expect(text).to.include("\r\u001b[2Kall committed; receiving the pixels: 2/3 providers sent theirs, 4 s");
        expect(text.endsWith("\r\u001b[2K") || text.endsWith("\n")).to.equal(true);
        expect(text.replaceAll("\r\u001b[2K", "")).to.not.match(CONTROL);
      } else expect(text).to.not.match(CONTROL);
    }
  });

  it("on a narrow terminal the status line is cut to fit (a wrapped line could not be redrawn)", () => {
    const err: string[] = [];
    const view = convertProgress({
      json: false,
      tty: true,
      columns: 30,
      out: { write: () => 0 },
      err: { write: (t: string) => err.push(t) },
    });
    view.onProgress(beat());
    expect(err).to.deep.equal(["\r\u001b[2Krendering on 3 providers: 3 …"]);
  });

  it("--json: every event a JSON line on stdout, pages in order, nothing on stderr", () => {
    const { view, out, err, tick } = capture({ json: true });
    for (const event of conversion(3)) {
      tick(1500);
      view.onProgress(event);
    }
    const lines = out.map((line) => JSON.parse(line) as { event: string; page?: number; pages?: number });
    expect(lines.filter((l) => l.event === "page").map((l) => `${l.page}/${l.pages}`)).to.deep.equal([
      "1/3",
      "2/3",
      "3/3",
    ]);
    expect(lines.map((l) => l.event)).to.include.members(["run.qubeSent", "heartbeat", "rendered"]);
    expect(err).to.deep.equal([]);
  });

  it("hostile provider texts: no escape sequence reaches the terminal, lines stay short, JSON too", () => {
    const failure: ConvertEvent = {
      type: "run",
      event: {
        type: "providerFailed",
        provider: PEER,
        code: `X${HOSTILE}`,
        message: HOSTILE,
        details: HOSTILE.repeat(100_000),
      },
    };
    for (const tty of [true, false]) {
      const { view, err } = capture({ tty });
      view.onProgress(failure);
      const text = err.join("");
      expect(text).to.not.match(CONTROL);
      expect(text).to.not.include("\r");
      expect(text.split("\n").filter(Boolean)).to.have.length(1);
      expect(text.length).to.be.below(400);
      expect(text).to.include("?]0;pwned??[2J");
    }
    const { view, out } = capture({ json: true });
    view.onProgress(failure);
    const line = JSON.parse(out.join("")) as { code: string; details: string; message: string };
    for (const text of [line.code, line.details, line.message]) expect(text).to.not.match(CONTROL);
    expect(line.details.length).to.be.at.most(1024);
  });

  it("implausible counts are ignored: huge, fractional, negative, out of order, beyond the page count", () => {
    const { view, err, tick } = capture({ tty: false });
    view.onProgress({ type: "rendered", pages: 2, agreeing: 3 });
    const wrong: ConvertEvent[] = [
      { type: "page", page: 2, pages: 2, width: 10, height: 10 }, // before page 1
      { type: "page", page: 1, pages: 1e18, width: 10, height: 10 }, // another total
      { type: "page", page: 1.5, pages: 2, width: 10, height: 10 },
      { type: "page", page: -1, pages: 2, width: 10, height: 10 },
      { type: "page", page: 3, pages: 2, width: 10, height: 10 },
    ];
    for (const event of wrong) view.onProgress(event);
    view.onProgress({ type: "page", page: 1, pages: 2, width: 1e12, height: Number.NaN }); // dimensions left out
    view.onProgress({ type: "page", page: 1, pages: 2, width: 5, height: 5 }); // a repeat
    view.onProgress({ type: "page", page: 2, pages: 2, width: 5, height: 5 });
    for (const fields of [
      { sent: 1e12 },
      { committed: -1 },
      { elapsedMs: Number.POSITIVE_INFINITY },
      { failed: 0.5 },
    ]) {
      tick(20_000);
      view.onProgress(beat(fields));
    }
    view.onProgress({ type: "rendered", pages: 2 ** 60, agreeing: 3 });
    expect(err).to.deep.equal([
      "rendered 2 pages; 3 providers agree bitwise\n",
      "  page 1/2 checked, rebuilt from verified pixels\n",
      "  page 2/2: 5x5 px checked, rebuilt from verified pixels\n",
    ]);
    expect(heartbeatText(beat({ sent: 65 }) as Extract<ConvertEvent, { type: "heartbeat" }>)).to.equal(undefined);
  });

  it("a flood of heartbeats is bounded: one status per 250 ms on a terminal, per 10 s in logs, per second in JSON", () => {
    const cases = [
      { mode: { tty: true }, stream: "err", max: 41 },
      { mode: { tty: false }, stream: "err", max: 2 },
      { mode: { json: true }, stream: "out", max: 11 },
    ] as const;
    for (const { mode, stream, max } of cases) {
      const display = capture(mode);
      // 20 000 heartbeats over 10 s of the display's clock
      for (let i = 0; i < 20_000; i++) {
        display.tick(0.5);
        display.view.onProgress(beat());
      }
      const writes = display[stream].length;
      expect(writes, JSON.stringify(mode)).to.be.at.least(1).and.at.most(max);
    }
  });

  it("printable: controls replaced, breaks become spaces, bounded whatever the input's length", () => {
    expect(printable("a\u001b[31mb\u0007c\u009bd\u202ee")).to.equal("a?[31mb?c?d?e");
    expect(printable("line 1\r\nline 2\ttab")).to.equal("line 1 line 2 tab");
    expect(printable("x".repeat(10_000_000), 50)).to.have.length(50);
    expect(printable("ok")).to.equal("ok");
    expect(printable("\ud800 lone surrogate")).to.equal("? lone surrogate");
  });
});

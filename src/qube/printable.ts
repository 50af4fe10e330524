/**
 * Text that comes from outside (a provider's refusal reason, the renderer's stderr, which quotes the untrusted
 * PDF) made safe to print on a terminal: no control character survives, so no escape sequence can move the
 * cursor, retitle the window, rewrite earlier lines or hide text; and its length is bounded.
 */

/** Line breaks and tabs (become spaces), then every other control, format, private-use or lone surrogate. */
const BREAKS = /[\t\n\v\f\r\u2028\u2029]+/g;
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Co}\p{Cs}]/gu;

/**
 * One line of at most `max` characters: C0 and C1 controls (ESC, CSI, BEL ...), DEL, bidirectional overrides,
 * zero-width and private-use characters become `?`, line breaks become spaces, and a longer text ends in `…`.
 * Only the first `max + 1` characters are looked at, whatever the text's length.
 *
 * @example
 * printable("\u001b]0;owned\u0007 bad xref"); // "?]0;owned? bad xref"
 */
export function printable(text: string, max = 300): string {
  const head = text.slice(0, max + 1);
  const clean = head.replace(BREAKS, " ").replace(UNPRINTABLE, "?");
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

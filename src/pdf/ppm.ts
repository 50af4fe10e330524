/**
 * Strict reading of the page bitmaps a disposable qube returns: binary PPM (P6) exactly as poppler's
 * `pdftoppm` writes it (`P6\n<width> <height>\n255\n` then width*height*3 bytes of RGB). The header is read
 * and the dimensions and file size are checked against limits before any pixel is read; anything else
 * (comments, other maxvals, trailing bytes, a short file) is refused.
 */
import { open } from "node:fs/promises";
import { PeerError } from "../qube/errors.js";

/** Bounds on a page bitmap, checked from its header before any pixel is read. */
export interface PageLimits {
  /** Largest width or height, pixels. */
  maxSide: number;
  /** Largest width * height, pixels. */
  maxPixels: number;
}

/** 10 000 px a side (A4 at 850 dpi), 50 megapixels. */
export const DEFAULT_PAGE_LIMITS: PageLimits = { maxSide: 10_000, maxPixels: 50_000_000 };

/** One page as 8-bit RGB pixels. */
export interface RgbPage {
  width: number;
  height: number;
  /** width * height * 3 bytes, rows top to bottom. */
  pixels: Buffer;
}

const HEADER = /^P6\n([1-9][0-9]{0,4}) ([1-9][0-9]{0,4})\n255\n/;
const MAX_HEADER_BYTES = 32;

/** Parses a PPM header; returns the dimensions and the header's length. */
export function parsePpmHeader(
  head: Buffer,
  limits: PageLimits = DEFAULT_PAGE_LIMITS,
): { width: number; height: number; offset: number } {
  const match = HEADER.exec(head.subarray(0, MAX_HEADER_BYTES).toString("latin1"));
  if (!match) throw new PeerError("PAGE_INVALID", "A page bitmap is not a plain RGB bitmap (binary PPM, maxval 255)");
  const width = Number(match[1]);
  const height = Number(match[2]);
  if (width > limits.maxSide || height > limits.maxSide || width * height > limits.maxPixels)
    throw new PeerError("PAGE_TOO_LARGE", "A page bitmap is larger than allowed", {
      details: `${width}x${height}, at most ${limits.maxSide} a side and ${limits.maxPixels} pixels`,
    });
  return { width, height, offset: match[0].length };
}

/**
 * Reads a page bitmap file: header first, then exactly width*height*3 bytes; the file must end there.
 *
 * @example
 * const { width, height, pixels } = await readPpm("out/pages/p-01.ppm");
 */
export async function readPpm(path: string, limits: PageLimits = DEFAULT_PAGE_LIMITS): Promise<RgbPage> {
  const file = await open(path, "r");
  try {
    const { size } = await file.stat();
    const head = Buffer.alloc(MAX_HEADER_BYTES);
    const { bytesRead } = await file.read(head, 0, MAX_HEADER_BYTES, 0);
    const { width, height, offset } = parsePpmHeader(head.subarray(0, bytesRead), limits);
    const expected = offset + width * height * 3;
    if (size !== expected)
      throw new PeerError("PAGE_INVALID", "A page bitmap's size does not match its dimensions", {
        details: `${size} bytes, expected ${expected} for ${width}x${height}`,
      });
    const pixels = Buffer.alloc(width * height * 3);
    const read = await file.read(pixels, 0, pixels.length, offset);
    if (read.bytesRead !== pixels.length)
      throw new PeerError("PAGE_INVALID", "A page bitmap is shorter than its dimensions say");
    return { width, height, pixels };
  } finally {
    await file.close();
  }
}

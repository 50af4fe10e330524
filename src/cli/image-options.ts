/**
 * `--ship-image` and `--image-archive FILE` of `airqube run` (and `convert-pdf`): the image archive to ship to
 * providers that lack the image, made once per image and kept in the requestor's data directory.
 */
import { join } from "node:path";
import Docker from "dockerode";
import { type ShippableImage, shippableFromEngine, shippableFromFile } from "../images/ship.js";

/** The image flags of `airqube run`. */
export interface ImageShipFlags {
  image: string;
  shipImage?: boolean;
  imageArchive?: string;
}

/** Where the requestor keeps archives of shipped images (by image id). */
export const shippedImagesDir = (dataDir: string) => join(dataDir, "shipped-images");

/**
 * The archive to ship for these flags, or undefined when the image is not shipped.
 *
 * @example
 * const imageArchive = await shippedImageFrom({ image: "airqube/pdf:latest", shipImage: true }, dataDir);
 */
export async function shippedImageFrom(
  flags: ImageShipFlags,
  dataDir: string,
  options: { signal?: AbortSignal } = {},
): Promise<ShippableImage | undefined> {
  if (flags.imageArchive) return shippableFromFile(flags.imageArchive, shippedImagesDir(dataDir), options);
  if (flags.shipImage) return shippableFromEngine(new Docker(), flags.image, shippedImagesDir(dataDir), options);
  return undefined;
}

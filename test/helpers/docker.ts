import Docker from "dockerode";
import { SANDBOX_LABEL } from "../../src/sandbox/hardening.js";

export const BUSYBOX = "airqube/busybox:latest";

/** Containers carrying the Airqube label that belong to this test process. */
export async function ourContainers(docker = new Docker()): Promise<string[]> {
  const list = await docker.listContainers({
    all: true,
    filters: { label: [`${SANDBOX_LABEL}.owner=${process.pid}`] },
  });
  return list.map((c) => c.Id);
}

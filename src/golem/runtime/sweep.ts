/**
 * Cleanup after a runtime killed at any point (SIGKILL included). Every runtime process that creates anything
 * first writes an instance record (`<home>/instances/<pid>-<instance>.json`: its pid and start time, work dir
 * and private temp dir), and labels its containers with the instance and its pid. The next runtime to start
 * sweeps the instances whose process is gone: their containers (by label), their micro-VMs (QEMU processes
 * working in the instance's temp dir), their temp dir (staged inputs) and their output staging in the work
 * dir, then the record.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readdir, readFile, readlink, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type Docker from "dockerode";
import { z } from "zod";

/** The system's temp dir, read before an instance's own becomes TMPDIR. */
const SYSTEM_TMP = tmpdir();

/** The label every runtime container carries: its instance id. */
export const RUNTIME_LABEL = "airqube.golem-runtime";
/** The label with the pid of the runtime process that owns the container. */
export const RUNTIME_OWNER_LABEL = `${RUNTIME_LABEL}.owner`;

/** The labels of a runtime instance's containers. */
export function runtimeLabels(instance: string, pid = process.pid): Record<string, string> {
  return { [RUNTIME_LABEL]: instance, [RUNTIME_OWNER_LABEL]: String(pid) };
}

const recordSchema = z.strictObject({
  pid: z.int().positive(),
  startTime: z.string().max(32),
  instance: z.string().regex(/^[0-9a-f]{16}$/),
  workdir: z.string().max(4096).optional(),
  tmp: z.string().max(4096),
});
type InstanceRecord = z.infer<typeof recordSchema>;

/** The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), "" when gone. */
export async function processStartTime(pid: number): Promise<string> {
  const text = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return fields[19] ?? "";
}

/** Whether the process that wrote a record still runs (the same pid and start time: not a reused pid). */
export async function alive(record: { pid: number; startTime: string }): Promise<boolean> {
  if (record.pid === process.pid) return true;
  const now = await processStartTime(record.pid);
  return now !== "" && now === record.startTime;
}

/** A registered runtime instance: its id, its private temp dir, and how to remove its record. */
export interface RuntimeInstance {
  id: string;
  tmp: string;
  /** The system's temp dir (before the instance's became TMPDIR): shared caches belong there. */
  systemTmp: string;
  /** Removes the temp dir and the record (after every sandbox is gone). */
  release(): Promise<void>;
}

/**
 * Registers this process as a runtime instance (the record is written before anything is created) and makes
 * its private temp dir, which becomes the process's TMPDIR (the sandboxes stage inputs there).
 *
 * @example
 * const instance = await registerInstance(home, workdir);
 */
export async function registerInstance(home: string, workdir?: string): Promise<RuntimeInstance> {
  const id = randomBytes(8).toString("hex");
  const dir = join(home, "instances");
  // in the system's temp dir, traversable (0711): micro-VMs' QEMUs run as other uids in private dirs under it
  const systemTmp = SYSTEM_TMP;
  const tmp = join(systemTmp, `airqube-golem-runtime-${process.pid}-${id}`);
  const file = join(dir, `${process.pid}-${id}.json`);
  const record: InstanceRecord = {
    pid: process.pid,
    startTime: await processStartTime(process.pid),
    instance: id,
    ...(workdir ? { workdir } : {}),
    tmp,
  };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(file, JSON.stringify(record), { mode: 0o600 });
  await mkdir(tmp, { mode: 0o711 });
  await chmod(tmp, 0o711);
  process.env.TMPDIR = tmp;
  return {
    id,
    tmp,
    systemTmp,
    release: async () => {
      await rm(tmp, { recursive: true, force: true });
      await unlink(file).catch(() => undefined);
    },
  };
}

/** What a sweep removed. */
export interface SweepReport {
  instances: number;
  containers: number;
}

/**
 * Removes what runtime instances that are gone left behind: containers labelled {@link RUNTIME_LABEL} whose
 * owner is gone (also those of an instance without a record), each gone instance's temp dir and output staging,
 * and its record; and any runtime temp dir in the system's temp dir whose process is gone (an instance whose
 * home was removed since). Live instances (other activities' runtimes) are left alone.
 *
 * @example
 * const { containers } = await sweepRuntime(runtimeHome(), new Docker());
 */
export async function sweepRuntime(home: string, docker: Docker): Promise<SweepReport> {
  const dir = join(home, "instances");
  const names = await readdir(dir).catch(() => [] as string[]);
  const gone = new Set<string>();
  let instances = 0;
  let containers = 0;
  for (const name of names.filter((n) => n.endsWith(".json")).slice(0, 10_000)) {
    const file = join(dir, name);
    const text = await readFile(file, "utf8").catch(() => "");
    const parsed = text.length < 16_384 ? recordSchema.safeParse(parseJson(text)) : undefined;
    if (!parsed?.success) {
      await unlink(file).catch(() => undefined);
      continue;
    }
    const record = parsed.data;
    if (await alive(record)) continue;
    gone.add(record.instance);
    containers += await removeInstanceContainers(docker, record.instance);
    await killProcessesIn(record.tmp); // its micro-VMs' QEMUs (they run in private dirs under it)
    await rm(record.tmp, { recursive: true, force: true });
    if (record.workdir) {
      const leftovers = await readdir(record.workdir).catch(() => [] as string[]);
      for (const entry of leftovers.filter((e) => e.startsWith(`.airqube-staging-${record.pid}-`)))
        await rm(join(record.workdir, entry), { recursive: true, force: true });
    }
    await unlink(file).catch(() => undefined);
    instances++;
  }
  // temp dirs of instances gone without a record here (another home, since removed): any runtime's start clears them
  const systemTmp = SYSTEM_TMP;
  for (const entry of (await readdir(systemTmp).catch(() => [] as string[])).slice(0, 100_000)) {
    const match = /^airqube-golem-runtime-(\d{1,10})-[0-9a-f]{16}$/.exec(entry);
    if (!match || Number(match[1]) === process.pid || pidExists(Number(match[1]))) continue;
    await killProcessesIn(join(systemTmp, entry));
    await rm(join(systemTmp, entry), { recursive: true, force: true });
  }
  // containers of owners gone without a record (or whose record was lost)
  const listed = await docker.listContainers({ all: true, filters: { label: [RUNTIME_LABEL] } });
  for (const info of listed) {
    const owner = Number(info.Labels[RUNTIME_OWNER_LABEL]);
    if (Number.isInteger(owner) && owner > 0 && (owner === process.pid || pidExists(owner))) {
      if (!gone.has(info.Labels[RUNTIME_LABEL] ?? "")) continue;
    }
    if (await removeContainer(docker, info.Id)) containers++;
  }
  return { instances, containers };
}

async function removeInstanceContainers(docker: Docker, instance: string): Promise<number> {
  const listed = await docker.listContainers({ all: true, filters: { label: [`${RUNTIME_LABEL}=${instance}`] } });
  let removed = 0;
  for (const info of listed) if (await removeContainer(docker, info.Id)) removed++;
  return removed;
}

async function removeContainer(docker: Docker, id: string): Promise<boolean> {
  return docker
    .getContainer(id)
    .remove({ force: true, v: true })
    .then(
      () => true,
      (error: { statusCode?: number }) => error?.statusCode === 404,
    );
}

/**
 * Kills every process whose working directory lies under `dir` (a gone instance's QEMUs: each runs in its
 * VM's private directory, made under the instance's temp dir), before that directory is removed.
 */
async function killProcessesIn(dir: string): Promise<number> {
  const pids = (await readdir("/proc").catch(() => [] as string[])).filter((name) => /^\d+$/.test(name));
  let killed = 0;
  for (const pid of pids) {
    const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => "");
    if (!cwd.startsWith(`${dir}/`)) continue;
    try {
      process.kill(Number(pid), "SIGKILL");
      killed++;
    } catch {
      // gone meanwhile
    }
  }
  return killed;
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

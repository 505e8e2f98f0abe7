// CPU time (user + system, from /proc) of the workerd processes that one
// `wrangler dev` started: they share the process group of the wrangler
// process (harness.mjs starts it detached, so its pid is the group id).
// Linux only; the kernel counts in ticks (10 ms at CLK_TCK 100), so measure
// over many requests.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SEC = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);

/** CPU seconds used so far by the workerd processes in process group `pgid`. */
export function workerdCpuSeconds(pgid) {
  let ticks = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // comm is in parentheses and may hold spaces: split after its closing one.
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
    if (comm === 'workerd' && Number(fields[2]) === pgid) ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / TICKS_PER_SEC;
}

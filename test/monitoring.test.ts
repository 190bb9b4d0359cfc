import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

// monitoring/: the Prometheus rules and the Grafana dashboard must only use metrics walcache
// exports, the dashboard must be valid JSON, and promtool (when installed) must accept the
// rules and pass their unit tests. No services needed.

const root = fileURLToPath(new URL('..', import.meta.url));
const prometheusDir = join(root, 'monitoring', 'prometheus');
const rulesFile = join(prometheusDir, 'walcache-alerts.yml');
const rulesTestFile = join(prometheusDir, 'walcache-alerts.test.yml');
const configFile = join(prometheusDir, 'prometheus.yml');
const dashboardFile = join(root, 'monitoring', 'grafana', 'walcache-dashboard.json');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Metric names defined in src (`name: 'walcache_…'`, or a gauge helper's first argument), and which are histograms. */
function definedMetrics(): { names: Set<string>; histograms: Set<string> } {
  const names = new Set<string>();
  const histograms = new Set<string>();
  for (const file of sourceFiles(join(root, 'src'))) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(
      /(?:\bname:|\b[A-Za-z]*(?:Gauge|Counter|Histogram)\()\s*'(walcache_[a-z0-9_]+)'/g,
    ))
      names.add(m[1] as string);
    for (const m of text.matchAll(/new Histogram\(\{\s*name:\s*'(walcache_[a-z0-9_]+)'/g))
      histograms.add(m[1] as string);
  }
  return { names, histograms };
}

/** `walcache_…` metric names used in a text; `walcache_cache_*` globs and `walcache_.+` regexes are not names. */
function usedMetrics(text: string): Set<string> {
  return new Set(text.match(/\bwalcache_[a-z0-9_]*[a-z0-9](?![a-z0-9_*])/g) ?? []);
}

function undefinedMetrics(used: Set<string>): string[] {
  const { names, histograms } = definedMetrics();
  return [...used].filter((metric) => {
    if (names.has(metric)) return false;
    const base = metric.replace(/_(bucket|count|sum)$/, '');
    return !(base !== metric && histograms.has(base));
  });
}

interface Panel {
  readonly id?: number;
  readonly type: string;
  readonly title: string;
  readonly datasource?: { readonly type: string; readonly uid: string };
  readonly gridPos: {
    readonly h: number;
    readonly w: number;
    readonly x: number;
    readonly y: number;
  };
  readonly targets?: readonly { readonly expr: string; readonly datasource?: { uid: string } }[];
}

function promtoolAvailable(): boolean {
  const r = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  return r.error === undefined && r.status === 0;
}

function promtool(...args: string[]): { status: number | null; output: string } {
  const r = spawnSync('promtool', args, { cwd: prometheusDir, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describe('monitoring', () => {
  it('finds the metrics src defines, histograms included', () => {
    const { names, histograms } = definedMetrics();
    for (const metric of [
      'walcache_cache_hits_total',
      'walcache_breaker_open',
      'walcache_worker_active',
      'walcache_slot_retained_wal_bytes',
      'walcache_write_behind_dead_letters',
      'walcache_jobs_queue_jobs',
    ])
      assert.ok(names.has(metric), metric);
    assert.ok(histograms.has('walcache_worker_lag_seconds'));
    assert.ok(histograms.has('walcache_jobs_duration_seconds'));
    assert.ok(!histograms.has('walcache_breaker_open'));
  });

  it('the alert rules use only metrics walcache exports, and every alert has a severity and annotations', () => {
    const text = readFileSync(rulesFile, 'utf8');
    const used = usedMetrics(text);
    assert.ok(used.has('walcache_breaker_open'));
    assert.ok(used.has('walcache_write_behind_dead_letters'));
    assert.deepEqual(undefinedMetrics(used), []);
    const alerts = text.split(/^\s+- alert: /m).slice(1);
    assert.ok(alerts.length >= 10, `${alerts.length} alerts`);
    for (const alert of alerts) {
      const name = alert.slice(0, alert.indexOf('\n'));
      assert.match(alert, /\n\s+severity: (critical|warning|info)\n/, name);
      for (const annotation of ['summary', 'description', 'runbook'])
        assert.match(alert, new RegExp(`\\n\\s+${annotation}: `), `${name}: ${annotation}`);
    }
    const names = alerts.map((a) => a.slice(0, a.indexOf('\n')).trim());
    for (const expected of [
      'WalcacheRedisBreakerOpen',
      'WalcacheBusUnhealthy',
      'WalcacheHitRateDrop',
      'WalcacheNoActiveWorker',
      'WalcacheWorkerLagHigh',
      'WalcacheSlotRetainedWalHigh',
      'WalcacheWriteBehindDeadLetters',
      'WalcacheWriteBehindOldestPendingHigh',
      'WalcacheJobsFailing',
    ])
      assert.ok(names.includes(expected), expected);
  });

  it('the rule unit tests feed only metrics walcache exports', () => {
    const used = usedMetrics(readFileSync(rulesTestFile, 'utf8'));
    assert.deepEqual(undefinedMetrics(used), []);
  });

  it('the Grafana dashboard is valid JSON over metrics walcache exports', () => {
    const text = readFileSync(dashboardFile, 'utf8');
    const dashboard = JSON.parse(text) as {
      schemaVersion: number;
      uid: string;
      panels: Panel[];
      templating: { list: { name: string; type: string; query?: unknown }[] };
      __inputs: { name: string; pluginId: string }[];
    };
    assert.ok(dashboard.schemaVersion >= 36);
    assert.equal(dashboard.__inputs[0]?.name, 'DS_PROMETHEUS');
    const variables = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    assert.equal(variables.get('datasource')?.type, 'datasource');
    assert.equal(variables.get('datasource')?.query, 'prometheus');
    assert.equal(variables.get('job')?.type, 'query');
    assert.equal(variables.get('instance')?.type, 'query');

    const rows = dashboard.panels.filter((p) => p.type === 'row').map((p) => p.title);
    for (const row of ['Cache', 'Invalidation worker', 'Jobs', 'Write-behind'])
      assert.ok(
        rows.some((title) => title.startsWith(row)),
        `row ${row}`,
      );
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    const exprs: string[] = [];
    for (const panel of dashboard.panels) {
      assert.ok(panel.gridPos.x + panel.gridPos.w <= 24, `${panel.title} fits the grid`);
      if (panel.type === 'row') continue;
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax
      assert.equal(panel.datasource?.uid, '${datasource}', panel.title);
      assert.ok((panel.targets?.length ?? 0) > 0, `${panel.title} has queries`);
      for (const target of panel.targets ?? []) {
        assert.match(target.expr, /walcache_/, panel.title);
        exprs.push(target.expr);
      }
    }
    const used = usedMetrics(exprs.join('\n'));
    assert.ok(used.has('walcache_worker_lag_seconds_bucket'));
    assert.ok(used.has('walcache_write_behind_dead_letters'));
    assert.deepEqual(undefinedMetrics(usedMetrics(text)), []);
  });

  it('promtool accepts the rules and the config, and the rule unit tests pass', (t) => {
    if (!promtoolAvailable()) {
      t.skip('promtool is not on PATH (Debian: apt-get install prometheus)');
      return;
    }
    const rules = promtool('check', 'rules', rulesFile);
    assert.equal(rules.status, 0, rules.output);
    const config = promtool('check', 'config', configFile);
    assert.equal(config.status, 0, config.output);
    const tests = promtool('test', 'rules', rulesTestFile);
    assert.equal(tests.status, 0, tests.output);
    assert.match(tests.output, /SUCCESS/);
  });
});

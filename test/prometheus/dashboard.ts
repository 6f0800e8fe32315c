/**
 * Reading config/observability/grafana-dashboard.json the way Grafana does: every panel (rows' nested panels too),
 * every target's `expr`, the template variables, and the substitution of `$var` / `${var}` and Grafana's built-in
 * interval variables.
 */
import { readFileSync } from 'node:fs';

/** A Grafana target as far as this suite needs it. */
export interface Target {
  refId: string;
  expr: string;
  legendFormat?: string;
  instant?: boolean;
  datasource?: { type: string; uid: string };
}

/** A Grafana panel as far as this suite needs it. */
export interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos?: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: Target[];
  panels?: Panel[];
}

/** A template variable. */
export interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
  includeAll?: boolean;
  allValue?: string;
}

/** The parts of the dashboard JSON this suite reads. */
export interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Variable[] };
}

/** One expression with where it comes from. */
export interface DashboardExpr {
  panel: string;
  refId: string;
  expr: string;
  instant: boolean;
}

/** Parses the dashboard file. */
export function readDashboard(file: string): Dashboard {
  return JSON.parse(readFileSync(file, 'utf8')) as Dashboard;
}

/** Every panel, rows' collapsed children included, in order. */
export function allPanels(dashboard: Dashboard): Panel[] {
  const out: Panel[] = [];
  const walk = (panels: Panel[]): void => {
    for (const p of panels) {
      out.push(p);
      if (p.panels) walk(p.panels);
    }
  };
  walk(dashboard.panels);
  return out;
}

/** Every target expression of every panel. */
export function dashboardExprs(dashboard: Dashboard): DashboardExpr[] {
  return allPanels(dashboard).flatMap((p) =>
    (p.targets ?? []).map((t) => ({ panel: p.title, refId: t.refId, expr: t.expr, instant: t.instant === true })),
  );
}

/** The query text of a `query` variable. */
export function variableQuery(v: Variable): string {
  return typeof v.query === 'string' ? v.query : v.query.query;
}

/**
 * Replaces `$name` and `${name}` (longest names first, so `$__rate_interval` is not read as `$__rate`) and throws
 * when a `$` is left: an unknown variable would reach Prometheus as a parse error, or worse, as a silent no-match.
 */
export function substitute(expr: string, values: Readonly<Record<string, string>>): string {
  const names = Object.keys(values).sort((a, b) => b.length - a.length);
  let out = expr;
  for (const name of names) {
    out = out.split(`\${${name}}`).join(values[name]);
    out = out.replace(new RegExp(`\\$${name.replace(/[$_]/g, (c) => `\\${c}`)}(?![A-Za-z0-9_])`, 'g'), values[name]!);
  }
  if (out.includes('$')) throw new Error(`unknown template variable left in ${out}`);
  return out;
}

/** `label_values(selector, label)` → its parts, or null for another kind of variable query. */
export function parseLabelValues(query: string): { match: string; label: string } | null {
  const m = /^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$/.exec(query.trim());
  return m ? { match: m[1]!, label: m[2]! } : null;
}

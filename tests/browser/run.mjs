// Headless Chromium over the dashboard of a running controller with seeded
// history (started by controller/tests/it/browser.rs, which passes what the
// store holds). Usage: node run.mjs <base-url> <expected.json> <screenshot-dir>
// Prints one line per check and "N passed, N failed"; exits 1 on a failure.
import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, expectedPath, shots] = process.argv.slice(2);
if (!base || !expectedPath || !shots) {
  console.error('usage: node run.mjs <base-url> <expected.json> <screenshot-dir>');
  process.exit(2);
}
const expected = JSON.parse(readFileSync(expectedPath, 'utf8'));
mkdirSync(shots, { recursive: true });

const args = ['--headless=new', '--disable-gpu', '--disable-dev-shm-usage'];
// Chromium refuses to start as root without it (CI runs as root).
if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args,
});

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed += 1;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${name}: ${e.message}`);
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

const desktop = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await desktop.newPage();
async function open(path, shot) {
  const res = await page.goto(base + path, { waitUntil: 'load' });
  assert(res.status() === 200, `${path}: HTTP ${res.status()}`);
  await page.screenshot({ path: join(shots, shot), fullPage: false });
}

await check('overview: status bars and uptime for every check', async () => {
  await open('/', 'overview.png');
  const bars = await page.locator('svg.bar').count();
  assert(bars >= expected.checks, `${bars} bars for ${expected.checks} checks`);
  const text = await page.textContent('body');
  assert(text.includes('uptime 24 h'), 'no 24 h uptime');
  assert(text.includes(expected.target), `target ${expected.target} not shown`);
});

await check('check page: every graph point is the stored rollup', async () => {
  await open(`/checks/${expected.check}?range=1h`, 'check.png');
  const drawn = await page.$$eval(
    `svg[data-phase="total"] g[data-region="${expected.region}"] circle`,
    (cs) => cs.map((c) => [Number(c.dataset.bucket), Number(c.dataset.p50)]),
  );
  assert(drawn.length === expected.points.length, `${drawn.length} points drawn, ${expected.points.length} stored`);
  drawn.forEach((p, i) => {
    const want = expected.points[i];
    assert(p[0] === want[0] && p[1] === want[1], `point ${i}: drawn ${p}, stored ${want}`);
  });
  // Drawn where its value says: a higher p50 is higher on the chart (smaller y).
  const ys = await page.$$eval(
    `svg[data-phase="total"] g[data-region="${expected.region}"] circle`,
    (cs) => cs.map((c) => Number(c.getAttribute('cy'))),
  );
  const hi = expected.points.reduce((a, p, i) => (p[1] > expected.points[a][1] ? i : a), 0);
  const lo = expected.points.reduce((a, p, i) => (p[1] < expected.points[a][1] ? i : a), 0);
  assert(ys[hi] < ys[lo], `the highest p50 (y ${ys[hi]}) is not above the lowest (y ${ys[lo]})`);
});

await check('alerts: the open alert and its page', async () => {
  await open('/alerts', 'alerts.png');
  const text = await page.textContent('body');
  assert(text.includes(expected.alert), `alert "${expected.alert}" not listed`);
  await page.goto(`${base}/alerts/${expected.alert_id}`);
  assert((await page.textContent('body')).includes('fired'), 'the alert page has no timeline');
});

await check('fleet: every configured probe', async () => {
  await open('/fleet', 'fleet.png');
  for (const p of expected.probes) {
    assert((await page.locator(`[data-probe="${p}"]`).count()) === 1, `probe ${p} missing`);
  }
});

await check('SLA report: the check with its labels and a CSV link', async () => {
  await open('/sla', 'sla.png');
  assert((await page.locator(`[data-check="${expected.check}"]`).count()) >= 1, 'check missing');
  const text = await page.textContent('body');
  assert(text.includes('team=payments'), 'labels missing');
});

await check('public status page: the chosen checks, no internal URL or message', async () => {
  await open('/status', 'public.png');
  const html = await page.content();
  assert(html.includes(expected.check), 'the public check is missing');
  assert(html.includes('uptime'), 'no uptime on the public page');
  for (const secret of expected.internal) {
    assert(!html.includes(secret), `internal text ${secret} on the public page`);
  }
  const links = await page.$$eval('a[href]', (as) => as.map((a) => a.getAttribute('href')));
  assert(links.every((h) => !/^https?:/.test(h)), `external links: ${links}`);
});

const phone = await browser.newContext({
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
});
const small = await phone.newPage();
await check('phone: the alert banner stays small and nothing overflows', async () => {
  const res = await small.goto(base + '/', { waitUntil: 'load' });
  assert(res.status() === 200, `HTTP ${res.status()}`);
  await small.screenshot({ path: join(shots, 'phone.png') });
  const banner = await small.locator('.banner').first().boundingBox();
  assert(banner, 'no alert banner (the seeded alert is open)');
  assert(banner.height <= 844 * 0.35, `banner ${banner.height}px of 844px`);
  const width = await small.evaluate(() => document.documentElement.scrollWidth);
  const wide = await small.evaluate(() =>
    [...document.querySelectorAll('body *')]
      .filter((e) => e.getBoundingClientRect().right > 391)
      .filter((e) => !(e.parentElement && e.parentElement.closest('table')))
      .slice(0, 5)
      .map((e) => `${e.tagName.toLowerCase()}.${e.className}`),
  );
  assert(width <= 390 + 1, `page is ${width}px wide on a 390px screen: ${wide}`);
});

await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);

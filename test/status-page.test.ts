// The status page in a real browser: the system's headless Chromium, driven by
// playwright-core, against the balancer on loopback. A backend named like an
// HTML payload renders as text; a backend cut off shows as down within the
// page's polling; the drain button with a token asks first, then drains; the
// page shows time in state, bytes, check latency, dated events with their
// UTC offset and what each changed. Skipped, with the reason, where no
// Chromium is installed. With STATUS_PAGE_SCREENSHOT=FILE it also saves a
// screenshot (the one in docs/img).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { chromium, type BrowserContext } from 'playwright-core';
import { TOKEN, startAdminBalancer } from './helpers/admin.js';
import { HOST, connect, listen, namedServer, readLine, waitFor } from './helpers/net.js';

const executablePath = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((path) => existsSync(path));
const skip = executablePath === undefined ? 'no Chromium binary (/usr/bin/chromium); install the chromium package to run the status page test' : false;

/** A name that would run script if it were ever parsed as HTML. */
const hostile = '<img src=x onerror="window.__pwned=1">';

test('status page: both axes live, hostile names inert, drain from the page with a token', { skip, timeout: 120_000 }, async (t) => {
  const a = await namedServer(t, 'a');
  const { balancer, status } = await startAdminBalancer(t, [`a=${HOST}:${a.port}`]);
  // The CLI only accepts plain names; a pool fed by other code may hold anything.
  const evil = await listen(t, (socket) => socket.pipe(socket));
  balancer.pool.add({ id: hostile, host: HOST, port: evil.port });
  await waitFor(() => balancer.pool.status(hostile)?.health === 'up' && balancer.pool.status('a')?.health === 'up', { what: 'both up' });

  // Some bytes through a: the page shows them.
  const client = await connect(t, balancer.address.port);
  assert.equal(await readLine(client), 'a');
  client.write('hello\n');
  assert.equal(await readLine(client), 'hello');

  const profile = mkdtempSync(join(tmpdir(), 'status-page-chromium-'));
  // Chromium's own temporary files go inside the profile, so removing it leaves nothing in the temp directory.
  const browserTmp = join(profile, 'tmp');
  mkdirSync(browserTmp);
  const launching: Promise<BrowserContext> = chromium.launchPersistentContext(profile, {
    executablePath: executablePath!,
    headless: true,
    env: { ...process.env, TMPDIR: browserTmp },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  // One hook, in order: Chromium writes into its profile until it has exited
  // (removing the profile first failed with ENOTEMPTY and left it behind).
  t.after(async () => {
    await launching.then(
      (browser) => browser.close(),
      () => undefined,
    );
    rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    assert.equal(existsSync(profile), false, 'the browser profile is removed');
  });
  const browser = await launching;
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`${msg.text()} (${msg.location().url})`);
  });
  page.on('pageerror', (err) => problems.push(err.message));
  page.on('dialog', (dialog) => {
    problems.push(`dialog: ${dialog.message()}`);
    void dialog.dismiss();
  });

  await page.goto(`http://${HOST}:${status}/`);
  const rowA = page.locator('#backends tbody tr[data-backend="a"]');
  const rowEvil = page.locator('#backends tbody tr', { hasText: 'onerror' });
  await rowA.locator('td.health', { hasText: 'up' }).waitFor({ timeout: 30_000 });
  await rowEvil.locator('td.health', { hasText: 'up' }).waitFor({ timeout: 30_000 });

  // The hostile name is text: no element was made of it, no handler ran.
  assert.equal(await rowEvil.locator('td.name').textContent(), hostile);
  assert.equal(await page.locator('#backends img, #events img').count(), 0);
  // (Expressions as strings: the tests compile without the DOM's types.)
  assert.equal(await page.evaluate('typeof window.__pwned'), 'undefined');
  assert.equal(await rowA.locator('td.admin').textContent(), 'active');
  assert.equal(await rowA.locator('td.weight').textContent(), '1');
  // Without a token the buttons are disabled.
  assert.equal(await rowA.locator('button[data-action="drain"]').isDisabled(), true);
  // Time in state, bytes each way, the checks' latency.
  assert.match((await rowA.locator('td.since').textContent()) ?? '', /^\d+ (s|min \d+ s)$/);
  assert.match((await rowA.locator('td.since').getAttribute('title')) ?? '', /^since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC[+-]\d\d:\d\d$/);
  await rowA.locator('td.bytes', { hasText: '6 B / 8 B' }).waitFor({ timeout: 30_000 });
  await rowA.locator('td.check', { hasText: /^\d+ ms \(mean \d+ ms\)$/ }).waitFor({ timeout: 30_000 });

  // Cut the hostile backend off: the probe takes it down, the page shows it.
  for (const socket of evil.sockets) socket.destroy();
  await new Promise<void>((resolve) => evil.server.close(() => resolve()));
  await rowEvil.locator('td.health', { hasText: 'down' }).waitFor({ timeout: 30_000 });
  assert.match((await rowEvil.locator('td.cause').textContent()) ?? '', /^PROBE_CONNECT_FAILED/);
  const downEvent = page.locator('#events tbody tr', { hasText: 'up -> down' }).filter({ hasText: 'onerror' }).first();
  await downEvent.waitFor({ timeout: 30_000 });
  // Dated, with the zone's offset; says which axis changed and to what.
  assert.match((await downEvent.locator('td').first().textContent()) ?? '', /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC[+-]\d\d:\d\d$/);
  assert.equal(await downEvent.locator('td.changed').textContent(), 'health -> down');
  assert.match((await page.locator('#zone').textContent()) ?? '', /local time .*offset from UTC/);

  // A token typed into the page unlocks the buttons; drain goes through the API.
  await page.fill('#token', TOKEN);
  await page.click('#token-use');
  assert.equal(await page.inputValue('#token'), '', 'the field is cleared once the token is taken');
  // Maintenance asks first; cancelled, nothing changes.
  await rowA.locator('button[data-action="maintenance"]').click();
  assert.match((await page.locator('#confirm-text').textContent()) ?? '', /^Put a in maintenance\? Every connection on it is closed now/);
  await page.click('#confirm-no');
  await page.locator('#message', { hasText: 'maintenance a: cancelled' }).waitFor({ timeout: 30_000 });
  assert.equal(await page.locator('#confirm').isVisible(), false);
  assert.equal(balancer.pool.status('a')?.admin, 'active');
  // Drain asks too; nothing happens until the second click.
  await rowA.locator('button[data-action="drain"]').click();
  await page.locator('#confirm-yes', { hasText: 'drain a' }).waitFor({ timeout: 30_000 });
  assert.equal(balancer.pool.status('a')?.admin, 'active', 'nothing drained before the confirmation');
  const screenshot = process.env['STATUS_PAGE_SCREENSHOT'];
  if (screenshot !== undefined) {
    await page.setViewportSize({ width: 1400, height: 900 });
    await page.screenshot({ path: screenshot, fullPage: true });
  }
  await page.click('#confirm-yes');
  await rowA.locator('td.admin', { hasText: 'draining' }).waitFor({ timeout: 30_000 });
  assert.equal(await rowA.locator('td.admin').textContent(), 'draining');
  await page.locator('#events tbody tr td.changed', { hasText: 'admin -> draining' }).first().waitFor({ timeout: 30_000 });
  assert.equal(balancer.pool.status('a')?.admin, 'draining');
  await page.locator('#message', { hasText: 'drain a: draining' }).waitFor({ timeout: 30_000 });
  // Nothing kept the token: no storage, no cookie.
  assert.deepEqual(await page.evaluate('[localStorage.length, sessionStorage.length, document.cookie]'), [0, 0, '']);

  // Nothing was refused by the CSP, nothing threw.
  assert.deepEqual(problems, []);
});

// The status page in a real browser: the system's headless Chromium, driven by
// playwright-core, against the balancer on loopback. A backend named like an
// HTML payload renders as text; a backend cut off shows as down within the
// page's polling; the drain button with a token drains. Skipped, with the
// reason, where no Chromium is installed.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { chromium, type BrowserContext } from 'playwright-core';
import { TOKEN, startAdminBalancer } from './helpers/admin.js';
import { HOST, listen, namedServer, waitFor } from './helpers/net.js';

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

  // Cut the hostile backend off: the probe takes it down, the page shows it.
  for (const socket of evil.sockets) socket.destroy();
  await new Promise<void>((resolve) => evil.server.close(() => resolve()));
  await rowEvil.locator('td.health', { hasText: 'down' }).waitFor({ timeout: 30_000 });
  assert.match((await rowEvil.locator('td.cause').textContent()) ?? '', /^PROBE_CONNECT_FAILED/);
  await page.locator('#events tbody tr', { hasText: 'up -> down' }).filter({ hasText: 'onerror' }).first().waitFor({ timeout: 30_000 });

  // A token typed into the page unlocks the buttons; drain goes through the API.
  await page.fill('#token', TOKEN);
  await page.click('#token-use');
  assert.equal(await page.inputValue('#token'), '', 'the field is cleared once the token is taken');
  await rowA.locator('button[data-action="drain"]').click();
  await rowA.locator('td.admin', { hasText: 'draining' }).waitFor({ timeout: 30_000 });
  assert.equal(balancer.pool.status('a')?.admin, 'draining');
  await page.locator('#message', { hasText: 'drain a: draining' }).waitFor({ timeout: 30_000 });
  // Nothing kept the token: no storage, no cookie.
  assert.deepEqual(await page.evaluate('[localStorage.length, sessionStorage.length, document.cookie]'), [0, 0, '']);

  // Nothing was refused by the CSP, nothing threw.
  assert.deepEqual(problems, []);
});

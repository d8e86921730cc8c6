// The dashboard's shell in a real browser (Debian's Chromium): signing in, refusals (a wrong
// token, a foreign Origin, a change without the CSRF value), the overview with live data, light
// and dark, phone width. Screenshots go to test-output/dashboard/ for a person to look at.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  goTo, mcpCall, mockProviderEnv, newPage, openBrowser, shot, signIn, sleep, startDaemon, startMockLlm,
} from './dashboard/harness.mjs';

const TOKEN = 'dashboard-test-token-0123456789';

test('sign-in: a wrong token gets nothing, the right one the overview', async (t) => {
  const d = await startDaemon(t, { token: TOKEN });
  const browser = await openBrowser(t);
  const { page, assertClean } = await newPage(browser, { allow: [/HTTP 401: POST .*\/ui\/signin/, /HTTP 401: GET .*\/ui\/api\/overview/, /status of 401/] });
  await page.goto(`${d.base}/`);
  await page.getByRole('heading', { name: 'Sign in to exai' }).waitFor();
  await shot(page, 'signin');
  // Nothing but the sign-in form before signing in.
  assert.equal(await page.getByRole('navigation', { name: 'Pages' }).getByRole('link').count(), 0);
  await page.getByLabel('Token').fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'wrong token' }).waitFor();
  await shot(page, 'signin-wrong-token');

  await page.getByLabel('Token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  await page.getByRole('heading', { name: 'Health checks' }).waitFor();
  // The session cookie is HttpOnly and Strict, named after the port.
  const cookies = await page.context().cookies();
  const cookie = cookies.find((c) => c.name === `exai_session_${d.port}`);
  assert.ok(cookie, JSON.stringify(cookies));
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.equal(await page.evaluate(() => document.cookie), '');
  await shot(page, 'overview-signed-in');

  // Signing out ends the session: the API answers 401 again.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in to exai' }).waitFor();
  const after = await page.evaluate(async () => (await fetch('/ui/api/overview')).status);
  assert.equal(after, 401);
  assertClean();
});

test('without the sign-in, the API, the live stream and changes are refused', async (t) => {
  const d = await startDaemon(t, { token: TOKEN });
  for (const path of ['/ui/api/overview', '/ui/events?topics=stats', '/ui/api/kb/sources']) {
    const r = await fetch(`${d.base}${path}`);
    assert.equal(r.status, 401, path);
    const wrong = await fetch(`${d.base}${path}`, { headers: { cookie: `exai_session_${d.port}=forged` } });
    assert.equal(wrong.status, 401, path);
  }
  // The page itself and its session probe reveal nothing but that a sign-in is needed.
  const s = await (await fetch(`${d.base}/ui/api/session`)).json();
  assert.deepEqual(s, { principal: null, csrf: null, signed_in: false, token_required: true });
  // A foreign Origin is refused before anything else, even with the right token.
  const foreign = await fetch(`${d.base}/ui/signin`, {
    method: 'POST', headers: { origin: 'https://evil.example', 'content-type': 'application/json' }, body: JSON.stringify({ token: TOKEN }),
  });
  assert.equal(foreign.status, 403);
  assert.equal(foreign.headers.get('set-cookie'), null);
  const foreignRead = await fetch(`${d.base}/ui/api/overview`, { headers: { origin: 'https://evil.example', authorization: `Bearer ${TOKEN}` } });
  assert.equal(foreignRead.status, 403);
  // A signed-in cookie without the CSRF value cannot change anything.
  const signin = await fetch(`${d.base}/ui/signin`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: TOKEN }) });
  assert.equal(signin.status, 200);
  const cookie = signin.headers.get('set-cookie').split(';')[0];
  const { csrf } = await signin.json();
  const noCsrf = await fetch(`${d.base}/ui/api/maintenance/verify`, { method: 'POST', headers: { cookie } });
  assert.equal(noCsrf.status, 403);
  assert.match((await noCsrf.json()).error, /x-exai-csrf/);
  const withCsrf = await fetch(`${d.base}/ui/signout`, { method: 'POST', headers: { cookie, 'x-exai-csrf': csrf } });
  assert.equal(withCsrf.status, 200);
  // A form post (not JSON) cannot sign in: it could come from another site.
  const form = await fetch(`${d.base}/ui/signin`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${TOKEN}` });
  assert.equal(form.status, 415);
});

test('overview: checks, providers and live counters; light, dark and phone width', async (t) => {
  const mock = await startMockLlm(t);
  const d = await startDaemon(t, { env: mockProviderEnv(mock) });
  const browser = await openBrowser(t);
  const { page, assertClean } = await newPage(browser);
  await signIn(page, d.base);
  await page.getByRole('heading', { name: 'Health checks' }).waitFor();
  // Every check of `exai health` is listed with its status.
  const rows = page.getByRole('table').first().getByRole('row');
  assert.ok((await rows.count()) > 5);
  await page.getByText('Timeout hierarchy').waitFor();
  await page.locator('#live.on').waitFor();
  const callsBefore = Number((await page.locator('#ov-calls').textContent()).replace(/\D/g, ''));
  // A chat call through MCP shows up in the live counters and the provider table.
  const result = await mcpCall(d, 'chat', { prompt: 'What is a monad?', model: 'glm-4.6' });
  assert.ok(!result.error && !result.result.isError, JSON.stringify(result));
  await page.waitForFunction((n) => Number(document.querySelector('#ov-calls').textContent.replace(/\D/g, '')) > n, callsBefore);
  await page.locator('#ov-providers').getByText('glm').waitFor();
  await shot(page, 'overview');

  await page.getByRole('button', { name: 'Switch between light and dark' }).click();
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark');
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(17, 20, 24)');
  await shot(page, 'overview-dark');

  const phone = await newPage(browser, { width: 390, height: 844, colorScheme: 'dark' });
  await signIn(phone.page, d.base);
  await phone.page.getByRole('heading', { name: 'Health checks' }).waitFor();
  // Nothing wider than the screen but the tables' own scrolling boxes.
  const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow} px wider than the phone`);
  await shot(phone.page, 'overview-phone');
  phone.assertClean();
  assertClean();
});

test('keyboard: skip link, nav links and the theme button are reachable by Tab', async (t) => {
  const d = await startDaemon(t);
  const browser = await openBrowser(t);
  const { page, assertClean } = await newPage(browser);
  await signIn(page, d.base);
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  const seen = [];
  for (let i = 0; i < 12; i++) {
    await page.keyboard.press('Tab');
    seen.push(await page.evaluate(() => document.activeElement.getAttribute('aria-label') || document.activeElement.textContent));
  }
  assert.ok(seen.includes('Overview'), seen.join(' | '));
  assert.ok(seen.includes('Switch between light and dark'), seen.join(' | '));
  await goTo(page, 'Overview');
  await sleep(100);
  assertClean();
});

test('a page still loading when the user moves on never draws over the next page', async (t) => {
  const d = await startDaemon(t);
  const browser = await openBrowser(t);
  const { page, assertClean } = await newPage(browser);
  // The overview's data arrives late; meanwhile the user opens Activity.
  await page.route('**/ui/api/overview', async (route) => {
    await sleep(1500);
    await route.continue();
  });
  await page.goto(`${d.base}/`);
  await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Activity' }).click();
  await page.getByRole('heading', { level: 1, name: 'Activity' }).waitFor();
  await sleep(2500);
  assert.equal(await page.getByRole('heading', { name: 'Health checks' }).count(), 0);
  assert.equal(await page.getByRole('heading', { level: 1, name: 'Activity' }).count(), 1);
  assertClean();
});

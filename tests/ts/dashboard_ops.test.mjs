// The dashboard's operations pages in a real browser (Debian's Chromium): Activity (a chat call
// through MCP appears in the recent calls and the charts, live), Validation (the mock suite run
// from its button, its results and the history chart), Logs (the call in the merged stream,
// filters, following) and Maintenance (verify and backup buttons, the backups list growing).
// Screenshots go to test-output/dashboard/ for a person to look at.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  goTo, mcpCall, mockProviderEnv, newPage, openBrowser, shot, signIn, startDaemon, startMockLlm,
} from './dashboard/harness.mjs';

const LONG = { timeout: 180_000 };

/** Sign in and let the overview finish drawing: a page left while its first answer is on the way
 * still draws when it arrives. */
async function open(page, d) {
  // The machine running the tests may be busy: give each step room.
  page.setDefaultTimeout(60_000);
  await signIn(page, d.base);
  await page.getByRole('heading', { name: 'Health checks' }).waitFor();
}

async function chat(d, prompt) {
  const result = await mcpCall(d, 'chat', { prompt, model: 'glm-4.6' });
  assert.ok(!result.error && !result.result.isError, JSON.stringify(result));
  return result;
}

test('activity: a chat call appears in the recent calls and the charts, live', async (t) => {
  const mock = await startMockLlm(t);
  const d = await startDaemon(t, { env: mockProviderEnv(mock) });
  const browser = await openBrowser(t);
  const { page, assertClean } = await newPage(browser);
  await open(page, d);
  await goTo(page, 'Activity');
  await page.locator('#activity-recent').getByText('No calls yet').waitFor();
  await page.locator('#live.on').waitFor();

  await chat(d, 'What is a monad?');
  // The list shows the call from the `calls` topic, without a reload.
  const row = page.locator('#activity-recent tbody tr').first();
  await row.getByText('chat', { exact: true }).waitFor();
  await row.getByText('glm-4.6').waitFor();
  await row.getByText('ok', { exact: true }).waitFor();
  // The figures follow: the tool in the calls chart, the latency chart and the tables.
  await page.locator('#activity-calls-chart .legend').getByText('chat', { exact: true }).waitFor();
  assert.ok(await page.locator('#activity-calls-chart svg path.line').count() >= 2);
  assert.ok(await page.locator('#activity-latency-chart svg circle').count() >= 1);
  await page.getByRole('cell', { name: 'glm', exact: true }).waitFor();
  assert.equal(await page.locator('#activity-kpis .kpi').first().locator('.v').textContent(), '1');
  await page.locator('#activity-latency-tool').selectOption('chat');
  await page.getByRole('img', { name: /latency of chat/ }).waitFor();

  // A second call, and the day's view by keyboard.
  await chat(d, 'And a functor?');
  await page.locator('#activity-recent tbody tr').nth(1).waitFor();
  await page.getByRole('button', { name: 'Last day' }).focus();
  await page.keyboard.press('Enter');
  await page.getByText('per 15 minutes', { exact: true }).waitFor();
  await page.waitForFunction(() => document.querySelector('#activity-kpis .kpi .v').textContent === '2');
  assert.equal(await page.getByRole('button', { name: 'Last day' }).getAttribute('aria-pressed'), 'true');
  await shot(page, 'activity');

  await page.getByRole('button', { name: 'Switch between light and dark' }).click();
  await shot(page, 'activity-dark');
  assertClean();
});

test('validation: the mock suite runs from its button; results and the history chart', LONG, async (t) => {
  const d = await startDaemon(t);
  const browser = await openBrowser(t);
  const { page, assertClean } = await newPage(browser);
  await open(page, d);
  await goTo(page, 'Validation');
  await page.getByText('No run recorded yet').waitFor();

  await page.getByRole('button', { name: 'Run the mock suite' }).click();
  // Progress arrives over the `validation` topic while the suite runs.
  await page.locator('#validation-status').getByText(/Running: \d+ of \d+ cases/).waitFor();
  await page.locator('#validation-live tbody tr').first().waitFor(LONG);
  assert.equal(await page.getByRole('button', { name: 'Run the mock suite' }).isDisabled(), true);
  await page.getByText(/Validation run 1 finished/).waitFor(LONG);

  // One row per tool, one badge per variation.
  const tools = page.locator('#validation-latest tbody tr');
  await tools.first().waitFor();
  assert.ok(await tools.count() > 20, `${await tools.count()} tools`);
  const cases = await page.locator('#validation-latest .badge').count();
  assert.ok(cases > 40, `${cases} results`);
  await page.locator('#validation-latest').getByRole('cell', { name: 'chat', exact: true }).first().waitFor();
  // Every case passes against the mock but precommit, which may skip where git is missing.
  const failing = await page.locator('#validation-latest .badge.fail').count();
  assert.equal(failing, 0);
  await page.locator('#validation-runs tbody tr').first().getByText('mock').waitFor();
  await page.locator('#validation-history-chart svg circle').first().waitFor();
  assert.equal(await page.getByRole('button', { name: 'Run the mock suite' }).isDisabled(), false);
  await shot(page, 'validation');

  // A second run: the history has two points.
  await page.getByRole('button', { name: 'Run the mock suite' }).click();
  await page.getByText(/Validation run 2 finished/).waitFor(LONG);
  await page.waitForFunction(() => document.querySelectorAll('#validation-history-chart svg circle').length === 2);
  assert.equal(await page.locator('#validation-runs tbody tr').count(), 2);
  assertClean();
});

test('logs: the call in the merged stream, filtered by tool and level, followed live', async (t) => {
  const mock = await startMockLlm(t);
  const d = await startDaemon(t, { env: mockProviderEnv(mock) });
  await chat(d, 'What is a monad?');
  const browser = await openBrowser(t);
  const { page, assertClean } = await newPage(browser);
  await open(page, d);
  await goTo(page, 'Logs');
  const list = page.locator('#logs-list');
  await list.getByText(/chat ok .* model=glm-4\.6/).waitFor();

  // The tool box suggests the tools seen (a combobox).
  await page.getByRole('combobox', { name: 'tool' }).fill('chat');
  await page.getByRole('combobox', { name: 'tool' }).press('Enter');
  await page.getByText(/^\d+ matching entries$/).waitFor();
  const tools = await list.locator('li .mono:not(.muted)').allTextContents();
  assert.ok(tools.length >= 1 && tools.every((x) => x === 'chat'), tools.join(','));

  // Followed live: a new call shows up without asking again.
  await chat(d, 'And a functor?');
  await list.getByText(/chat ok/).nth(1).waitFor();
  await page.getByText(/following$/).waitFor();
  await shot(page, 'logs');

  // Errors only: no call failed.
  await page.getByRole('combobox', { name: 'level' }).selectOption('error');
  await list.getByText('No entries match.').waitFor();
  // A different tool, live: it is filtered out while the filter says chat.
  await page.getByRole('combobox', { name: 'level' }).selectOption('');
  await page.getByText('2 matching entries').waitFor();
  await mcpCall(d, 'version', {});
  await chat(d, 'One more');
  await list.getByText(/chat ok/).nth(2).waitFor();
  assert.equal(await list.getByText(/version ok/).count(), 0);
  assertClean();
});

test('maintenance: verify and backup buttons show their results; the backups list grows', async (t) => {
  const mock = await startMockLlm(t);
  const d = await startDaemon(t, { env: mockProviderEnv(mock) });
  // A conversation thread: the state database exists to be checked and backed up.
  await chat(d, 'Remember this');
  const browser = await openBrowser(t);
  const { page, assertClean } = await newPage(browser);
  await open(page, d);
  await goTo(page, 'Maintenance');
  await page.locator('#maint-backups').getByText('No backup yet.').waitFor();

  await page.getByRole('button', { name: 'Verify the databases' }).click();
  const verify = page.locator('#maint-verify-result');
  await verify.getByText('Every database checks out (complete check).').waitFor();
  await verify.getByRole('cell', { name: 'state', exact: true }).waitFor();
  assert.equal(await verify.locator('.badge.fail').count(), 0);

  await page.getByLabel('quick check').check();
  await page.getByRole('button', { name: 'Verify the databases' }).click();
  await verify.getByText('Every database checks out (quick check).').waitFor();

  await page.getByRole('button', { name: 'Back up now' }).click();
  const backup = page.locator('#maint-backup-result');
  await backup.getByText(/Backed up in/).waitFor();
  await backup.getByRole('cell', { name: 'state', exact: true }).waitFor();
  const rows = page.locator('#maint-backups tbody tr');
  await rows.first().waitFor();
  assert.equal(await rows.count(), 1);
  await rows.first().locator('.badge.ok').waitFor();

  await page.getByRole('button', { name: 'Back up now' }).focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelectorAll('#maint-backups tbody tr').length === 2);
  assert.equal(await page.locator('#maint-backups .badge.ok').count(), 2);
  await shot(page, 'maintenance');
  assertClean();
});

test('the operations pages fit a phone', async (t) => {
  const d = await startDaemon(t);
  const browser = await openBrowser(t);
  const { page, assertClean } = await newPage(browser, { width: 390, height: 844 });
  await open(page, d);
  for (const title of ['Activity', 'Validation', 'Logs', 'Maintenance']) {
    await page.goto(`${d.base}/#/${title.toLowerCase()}`);
    await page.getByRole('heading', { level: 1, name: title }).waitFor();
    await page.waitForLoadState('networkidle');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${title} is ${overflow} px wider than the phone`);
    await shot(page, `${title.toLowerCase()}-phone`);
  }
  assertClean();
});

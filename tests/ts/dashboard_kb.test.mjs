// The knowledge-base and conversations pages in a real browser (Debian's Chromium): add a local
// Markdown corpus and watch its job reach the end, search and open a hit in the reader, refresh
// and remove the source, then read a chat's turns. Screenshots go to test-output/dashboard/.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import {
  goTo, mcpCall, mockProviderEnv, newPage, openBrowser, shot, signIn, startDaemon, startMockLlm,
} from './dashboard/harness.mjs';

const TOKEN = 'dashboard-kb-token-0123456789';

/** Sign in and wait for the overview to finish rendering (it renders after its request). */
async function ready(page, base, token) {
  await signIn(page, base, token);
  await page.getByRole('heading', { name: 'Health checks' }).waitFor();
}

/** A small Markdown corpus in a fresh directory (not a dot-directory: those are never indexed). */
async function corpus(t) {
  const root = await mkdtemp(join(tmpdir(), 'exai-kb-corpus-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  await mkdir(join(root, 'guide'));
  await writeFile(join(root, 'guide', 'retries.md'), [
    '# Retries', '',
    'The client retries a failed request with exponential backoff.', '',
    '## Backoff', '',
    'Each attempt waits twice as long as the one before, up to the quillwort ceiling of sixty seconds.', '',
    '## Giving up', '',
    'After five attempts the client reports the last error to its caller.', '',
  ].join('\n'));
  await writeFile(join(root, 'install.md'), '# Install\n\nRun the installer, then check the version it prints.\n');
  await writeFile(join(root, 'faq.md'), '# FAQ\n\nWhere are the logs? In the data directory, under logs/.\n');
  return root;
}

test('knowledge base: add a directory, follow its job, search, read a hit, refresh, remove', async (t) => {
  const root = await corpus(t);
  const d = await startDaemon(t, { token: TOKEN, env: { EXAI_TOOLS_ALLOWED_ROOTS: root } });
  const browser = await openBrowser(t);
  const { page, assertClean } = await newPage(browser);
  await ready(page, d.base, TOKEN);
  await goTo(page, 'Knowledge base');
  await page.getByText('No sources yet').waitFor();
  await shot(page, 'kb-empty');

  // Add the corpus; its job shows up and reaches `done` through the live `jobs` topic.
  await page.getByLabel('Path, URL, package or repository').fill(root);
  await page.getByLabel('Source name').fill('handbook');
  await page.getByLabel('Include globs').fill('*.md, **/*.md');
  await page.getByRole('button', { name: 'Add source' }).click();
  const job = page.locator('li.kb-job').filter({ hasText: 'handbook' }).first();
  await job.waitFor();
  await job.and(page.locator('[data-state="done"]')).waitFor({ timeout: 60000 });
  assert.match(await job.innerText(), /3\/3 files read/);
  assert.match(await job.innerText(), /3 added/);
  // The sources table follows the job's end by itself.
  const row = page.locator('tbody tr').filter({ hasText: 'handbook' });
  await row.waitFor();
  assert.match(await row.innerText(), /paths /);
  assert.match(await row.innerText(), /no embedding model/);
  await shot(page, 'kb-indexed');

  // Search by keyword with filters, from the keyboard: Enter submits.
  await page.getByRole('searchbox', { name: 'Query' }).fill('quillwort ceiling');
  await page.getByLabel('Mode').selectOption('keyword');
  await page.getByText('Filters').click();
  await page.getByRole('combobox', { name: /^Source/ }).selectOption('handbook');
  await page.getByLabel('Path prefix').fill('guide/');
  await page.getByRole('searchbox', { name: 'Query' }).press('Enter');
  const hits = page.locator('li.kb-hit');
  await hits.first().waitFor();
  assert.equal(await hits.count(), 1);
  assert.match(await hits.first().innerText(), /guide\/retries\.md/);
  assert.match(await hits.first().innerText(), /quillwort/);
  await shot(page, 'kb-search');

  // Opening the hit shows the whole document, the hit's section marked and in view.
  await hits.first().getByRole('button', { name: 'Retries' }).click();
  const reader = page.getByRole('dialog', { name: 'Retries' });
  await reader.waitFor();
  await reader.getByText('After five attempts the client reports the last error').waitFor();
  const marked = reader.locator('mark.kb-hit-chunk');
  assert.match(await marked.innerText(), /quillwort ceiling/);
  assert.ok(await marked.isVisible());
  await shot(page, 'kb-reader');
  await page.keyboard.press('Escape');
  await reader.waitFor({ state: 'hidden' });
  // Dark, at phone width.
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, 'kb-phone-dark');
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 1280, height: 800 });

  // Refresh: a second job on the same source, which finds the files unchanged.
  await row.getByRole('button', { name: 'Refresh handbook' }).click();
  const refresh = page.locator('li.kb-job[data-state="done"]').filter({ hasText: '3 unchanged' });
  await refresh.waitFor({ timeout: 60000 });

  // Remove asks first; keeping it changes nothing, confirming removes it.
  await row.getByRole('button', { name: 'Remove handbook' }).click();
  const confirm = page.getByRole('dialog', { name: 'Confirm removal' });
  await confirm.waitFor();
  await shot(page, 'kb-confirm-remove');
  await confirm.getByRole('button', { name: 'Keep' }).click();
  assert.equal(await row.count(), 1);
  await row.getByRole('button', { name: 'Remove handbook' }).click();
  await confirm.getByRole('button', { name: 'Remove' }).click();
  // The toast goes after a few seconds: look for it first.
  await page.getByText('Removed handbook (3 documents)').waitFor();
  await page.getByText('No sources yet').waitFor();
  await shot(page, 'kb-removed');
  assertClean();
});

test('knowledge base: a path outside the allowed roots is refused with the reason', async (t) => {
  const root = await corpus(t);
  const d = await startDaemon(t, { env: { EXAI_TOOLS_ALLOWED_ROOTS: join(root, 'guide') } });
  const browser = await openBrowser(t);
  const { page, assertClean } = await newPage(browser, { allow: [/HTTP 400: POST .*\/ui\/api\/kb\/sources$/, /status of 400/] });
  await ready(page, d.base);
  await goTo(page, 'Knowledge base');
  await page.getByLabel('Path, URL, package or repository').fill(root);
  await page.getByLabel('Source name').fill('outside');
  await page.getByRole('button', { name: 'Add source' }).click();
  await page.getByRole('alert').filter({ hasText: 'allowed' }).waitFor();
  assertClean();
});

test('conversations: a chat through MCP reads turn by turn with its model, tokens and cost', async (t) => {
  const mock = await startMockLlm(t);
  const d = await startDaemon(t, { token: TOKEN, env: mockProviderEnv(mock) });
  const first = await mcpCall(d, 'chat', { prompt: 'What is a monad?', model: 'glm-4.6' });
  assert.ok(!first.result.isError, JSON.stringify(first));
  const id = first.result.structuredContent.continuation_id;
  assert.ok(id, JSON.stringify(first.result.structuredContent));
  const second = await mcpCall(d, 'chat', { prompt: 'And a functor?', model: 'glm-4.6', continuation_id: id });
  assert.ok(!second.result.isError, JSON.stringify(second));

  const browser = await openBrowser(t);
  const { page, assertClean } = await newPage(browser);
  await ready(page, d.base, TOKEN);
  await goTo(page, 'Conversations');
  const row = page.locator('tbody tr').filter({ hasText: 'What is a monad?' });
  await row.waitFor();
  const cells = await row.locator('td').allInnerTexts();
  assert.equal(cells[1], 'chat');
  assert.equal(cells[2], 'glm-4.6');
  assert.equal(cells[3], '4');
  assert.match(cells[4], /\d+ in \/ \d+ out/);
  await shot(page, 'conversations-list');

  await row.getByRole('link', { name: 'What is a monad?' }).click();
  const turns = page.locator('li.kb-turn');
  await turns.nth(3).waitFor();
  assert.equal(await turns.count(), 4);
  assert.match(await turns.nth(0).innerText(), /What is a monad\?/);
  assert.match(await turns.nth(1).innerText(), /mock answer from glm-4\.6/);
  assert.match(await turns.nth(1).innerText(), /glm-4\.6 .* \d+ in \/ \d+ out/);
  assert.match(await turns.nth(2).innerText(), /And a functor\?/);
  await shot(page, 'conversations-thread');

  // Phone width: the thread stays readable.
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, 'conversations-thread-phone');
  assertClean();
});

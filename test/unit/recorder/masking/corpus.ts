/**
 * True positives and near misses for every detector. Every token is built at run time from a seeded generator, so
 * this file holds no string shaped like a real credential (secret scanners on the repository stay quiet) and every
 * run sees the same values. Cards, IBANs and SSNs are well-known test values with valid (or deliberately invalid)
 * check digits.
 */

import { mulberry32 } from '../../../../bench/prng.mjs';

const rnd = mulberry32(20240611);

const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const LOWER = 'abcdefghijklmnopqrstuvwxyz';
const DIGITS = '0123456789';
const ALNUM = UPPER + LOWER + DIGITS;
const URLSAFE = ALNUM + '-_';
const B64 = ALNUM + '+/';
const HEX = '0123456789abcdef';

/** Random text over an alphabet, with at least one upper, lower and digit when the alphabet has them. */
export function rand(alphabet: string, n: number): string {
  for (;;) {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(rnd() * alphabet.length)];
    const needs = [UPPER, LOWER, DIGITS].filter((cls) => [...cls].some((c) => alphabet.includes(c)));
    if (n < 8 || needs.every((cls) => [...s].some((c) => cls.includes(c)))) return s;
  }
}

const b64url = (s: string) => Buffer.from(s).toString('base64url');

/** A PEM block with `lines` lines of random base64, joined by `nl` (a newline, or `\\n` as in JSON text). */
export function pem(label: string, lines: number, nl = '\n'): { text: string; body: string } {
  const body = Array.from({ length: lines }, () => rand(B64, 64)).join(nl);
  return { text: `-----BEGIN ${label}-----${nl}${body}${nl}-----END ${label}-----`, body };
}

export interface Positive {
  readonly type: string;
  /** Text as it would appear in a prompt, file or tool result. */
  readonly text: string;
  /** The part that must not survive masking. */
  readonly secret: string;
}

const p = (type: string, text: string, secret: string): Positive => ({ type, text, secret });

const anthropic = 'sk-ant-' + 'api03-' + rand(URLSAFE, 93) + 'AA';
const anthropicAdmin = 'sk-ant-' + 'admin01-' + rand(URLSAFE, 93) + 'AA';
const openaiProj = 'sk-' + 'proj-' + rand(URLSAFE, 156);
const openaiLegacy = 'sk-' + rand(ALNUM, 48);
const akia = 'AKIA' + rand('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16);
const asia = 'ASIA' + rand('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16);
const awsSecret = rand(B64, 40);
const gcpKey = 'AIza' + rand(URLSAFE, 35);
const saKey = pem('PRIVATE KEY', 8, '\\n');
const azureAccountKey = rand(B64, 86) + '==';
const azureSecretNew = rand(ALNUM, 3) + '8Q~' + rand(ALNUM + '_~.-', 34);
const azureSecretOld = rand(ALNUM, 40);
const ghp = 'ghp_' + rand(ALNUM, 36);
const ghs = 'ghs_' + rand(ALNUM, 36);
const githubPat = 'github_pat_' + rand(ALNUM, 22) + '_' + rand(ALNUM, 59);
const glpat = 'glpat-' + rand(URLSAFE, 20);
const slackBot = 'xoxb-' + rand(DIGITS, 12) + '-' + rand(DIGITS, 13) + '-' + rand(ALNUM, 24);
const slackUser = 'xoxp-' + rand(DIGITS, 12) + '-' + rand(DIGITS, 12) + '-' + rand(DIGITS, 13) + '-' + rand(HEX, 32);
const slackHookPath = 'T' + rand(UPPER + DIGITS, 8) + '/B' + rand(UPPER + DIGITS, 10) + '/' + rand(ALNUM, 24);
const stripeLive = 'sk_' + 'live_' + rand(ALNUM, 24);
const stripeRestricted = 'rk_' + 'live_' + rand(ALNUM, 24);
const stripeTest = 'sk_' + 'test_' + rand(ALNUM, 24);
const twilioSid = 'AC' + rand(HEX, 32);
const twilioKey = 'SK' + rand(HEX, 32);
const twilioToken = rand(HEX, 32);
const sendgrid = 'SG.' + rand(URLSAFE, 22) + '.' + rand(URLSAFE, 43);
const npmToken = 'npm_' + rand(ALNUM, 36);
const pypiToken = 'pypi-' + 'AgEIcHlwaS5vcmc' + rand(URLSAFE, 140);
const hfToken = 'hf_' + rand(ALNUM, 34);
const jwt =
  b64url('{"alg":"HS256","typ":"JWT"}') +
  '.' +
  b64url(`{"sub":"${rand(DIGITS, 10)}","name":"Jane Roe","iat":1516239022}`) +
  '.' +
  rand(URLSAFE, 43);
const rsa = pem('RSA PRIVATE KEY', 12);
const openssh = pem('OPENSSH PRIVATE KEY', 6);
const ec = pem('EC PRIVATE KEY', 3);
const urlPw = rand(ALNUM, 16);
const connPw = rand(ALNUM, 14) + '!';
const genericSecret = rand(ALNUM, 32);
const bearer = rand(URLSAFE, 40);

export const POSITIVES: readonly Positive[] = [
  p('anthropic_api_key', `export ANTHROPIC_API_KEY=${anthropic}`, anthropic),
  p('anthropic_api_key', `admin key: ${anthropicAdmin}\n`, anthropicAdmin),
  p('openai_api_key', `OPENAI_API_KEY="${openaiProj}"`, openaiProj),
  p('openai_api_key', `client = OpenAI(api_key='${openaiLegacy}')`, openaiLegacy),
  p('aws_access_key_id', `aws_access_key_id = ${akia}`, akia),
  p('aws_access_key_id', `"AccessKeyId": "${asia}",`, asia),
  p('aws_secret_access_key', `[default]\naws_secret_access_key = ${awsSecret}\n`, awsSecret),
  p('aws_secret_access_key', `AWS_SECRET_ACCESS_KEY=${awsSecret}`, awsSecret),
  p('aws_secret_access_key', `"SecretAccessKey": "${awsSecret}",`, awsSecret),
  p('gcp_api_key', `https://maps.googleapis.com/maps/api/geocode/json?key=${gcpKey}`, gcpKey),
  p(
    'gcp_service_account_key',
    `{\n  "type": "service_account",\n  "project_id": "demo",\n  "private_key": "${saKey.text}\\n",\n  "client_email": "x@demo.iam.gserviceaccount.com"\n}`,
    saKey.body.slice(0, 64),
  ),
  p(
    'azure_storage_key',
    `DefaultEndpointsProtocol=https;AccountName=demostore;AccountKey=${azureAccountKey};EndpointSuffix=core.windows.net`,
    azureAccountKey.slice(0, 86),
  ),
  p('azure_client_secret', `clientSecret: ${azureSecretNew}`, azureSecretNew),
  p('azure_client_secret', `AZURE_CLIENT_SECRET=${azureSecretOld}`, azureSecretOld),
  p('github_token', `git clone https://x-access-token:${ghs}@github.com/org/repo.git`, ghs),
  p('github_token', `GITHUB_TOKEN=${ghp}`, ghp),
  p('github_token', `token ${githubPat}`, githubPat),
  p('gitlab_token', `curl --header "PRIVATE-TOKEN: ${glpat}" https://gitlab.example.com/api/v4/projects`, glpat),
  p('slack_token', `SLACK_BOT_TOKEN=${slackBot}`, slackBot),
  p('slack_token', `user token ${slackUser}`, slackUser),
  p('slack_webhook', `curl -X POST https://hooks.slack.com/services/${slackHookPath} -d '{}'`, slackHookPath),
  p('stripe_key', `Stripe.api_key = "${stripeLive}"`, stripeLive),
  p('stripe_key', `restricted: ${stripeRestricted}`, stripeRestricted),
  p('stripe_key', `STRIPE_SECRET_KEY=${stripeTest}`, stripeTest),
  p('twilio', `account ${twilioSid} and key ${twilioKey}`, twilioSid),
  p('twilio', `api key sid ${twilioKey}`, twilioKey),
  p('twilio', `TWILIO_AUTH_TOKEN=${twilioToken}`, twilioToken),
  p('sendgrid_api_key', `SENDGRID_API_KEY=${sendgrid}`, sendgrid),
  p('npm_token', `//registry.npmjs.org/:_authToken=${npmToken}`, npmToken),
  p('pypi_token', `[pypi]\n  username = __token__\n  password = ${pypiToken}\n`, pypiToken),
  p('huggingface_token', `huggingface-cli login --token ${hfToken}`, hfToken),
  p('jwt', `{"id_token": "${jwt}"}`, jwt),
  p('jwt', `Cookie: session=${jwt}; Path=/`, jwt),
  p('private_key', `Here is the key:\n${rsa.text}\nKeep it safe.`, rsa.body.slice(0, 64)),
  p('private_key', `${openssh.text}\n`, openssh.body.slice(0, 64)),
  p('private_key', `"key": "${ec.text.replace(/\n/g, '\\n')}"`, ec.body.slice(0, 64)),
  p('private_key', `-----BEGIN PRIVATE KEY-----\n${rsa.body}\n(truncated)`, rsa.body.slice(0, 64)),
  p('url_password', `DATABASE_URL=postgres://app:${urlPw}@db.internal:5432/app`, urlPw),
  p('url_password', `redis://:${urlPw}@cache.example.net:6379/0`, urlPw),
  p(
    'connection_string',
    `Server=tcp:sql.example.net,1433;Database=app;User ID=app;Password=${connPw};Encrypt=true;`,
    connPw,
  ),
  p('connection_string', `jdbc:mysql://db.example.net:3306/app?user=app&password=${connPw}`, connPw),
  p('bearer_token', `Authorization: Bearer ${bearer}`, bearer),
  p('generic_secret', `client_secret: "${genericSecret}"`, genericSecret),
  p('generic_secret', `SECRET_KEY = '${genericSecret}'`, genericSecret),
  p('generic_secret', `{"webhook_token":"${genericSecret}"}`, genericSecret),
  p('generic_secret', `db:\n  password: hunter2-Horse\n`, 'hunter2-Horse'),
  p('generic_secret', `const password = "correct horse battery staple";`, 'correct horse battery staple'),
  p('generic_secret', `{\\"password\\":\\"s3cr3t-pa55\\"}`, 's3cr3t-pa55'),
  p('email', 'Contact alice.smith@example-corp.com for access.', 'alice.smith@example-corp.com'),
  p('email', '<bob+claude@mail.co.uk>', 'bob+claude@mail.co.uk'),
  p('phone', 'Call me at +1 (415) 555-0132 tomorrow.', '555-0132'),
  p('phone', 'UK office: +44 20 7946 0958', '7946 0958'),
  p('phone', 'mobile +4915112345678', '+4915112345678'),
  p('phone', 'US: (415) 555-0132', '555-0132'),
  p('phone', 'US: 415-555-0132', '415-555-0132'),
  p('phone', 'tel. 415.555.0132', '415.555.0132'),
  p('phone', 'Berlin: 030 12345678', '030 12345678'),
  p('phone', 'Paris : 06 12 34 56 78', '06 12 34 56 78'),
  p('payment_card', 'card 4111 1111 1111 1111 exp 12/29', '4111 1111 1111 1111'),
  p('payment_card', 'visa 4012888888881881', '4012888888881881'),
  p('payment_card', 'mc: 5555-5555-5555-4444', '5555-5555-5555-4444'),
  p('payment_card', 'amex 3782 822463 10005', '3782 822463 10005'),
  p('payment_card', 'discover 6011111111111117.', '6011111111111117'),
  p('payment_card', 'jcb 3530111333300000', '3530111333300000'),
  p('iban', 'IBAN: DE89 3704 0044 0532 0130 00', '0532 0130'),
  p('iban', 'Pay to GB82WEST12345698765432 please', 'GB82WEST12345698765432'),
  p('iban', 'FR1420041010050500013M02606', 'FR1420041010050500013M02606'),
  p('iban', 'NL91 ABNA 0417 1643 00', '0417 1643'),
  p('us_ssn', 'SSN: 536-22-8745', '536-22-8745'),
  p('ipv4', 'client connected from 81.2.69.160:51234', '81.2.69.160'),
  p('ipv4', 'ssh root@203.0.114.7', '203.0.114.7'),
  p('ipv6', 'resolved to 2a00:1450:4001:82b::200e', '2a00:1450:4001:82b::200e'),
  p('ipv6', 'peer [2606:4700:4700::1111]:443', '2606:4700:4700::1111'),
];

export interface Negative {
  readonly name: string;
  readonly text: string;
}

const n = (name: string, text: string): Negative => ({ name, text });

const CLAUDE_CODE_TOOL = JSON.stringify(
  {
    name: 'Bash',
    description:
      'Executes a given bash command in a persistent shell session with optional timeout, ensuring proper handling and security measures. Never commit secrets such as API keys, passwords or tokens; use environment variables instead.',
    input_schema: {
      type: 'object',
      properties: {
        command: { type: 'string', description: 'The command to execute' },
        timeout: { type: 'number', description: 'Optional timeout in milliseconds (max 600000)' },
        token: { type: 'string', description: 'An access token, if the command needs one' },
        password: { type: 'string', description: 'Password for sudo; never logged' },
      },
      required: ['command'],
      additionalProperties: false,
      $schema: 'http://json-schema.org/draft-07/schema#',
    },
  },
  null,
  2,
);

export const NEGATIVES: readonly Negative[] = [
  n('uuid', 'request 123e4567-e89b-12d3-a456-426614174000 failed'),
  n('git sha', 'commit 9fceb02d0ae598e95dc970b74767f19372d61af8\nAuthor: Build Bot'),
  n('short sha', 'fixed in a1b2c3d (see #1234)'),
  n(
    'base64 image',
    `data:image/png;base64,${Buffer.from(Array.from({ length: 3000 }, () => Math.floor(rnd() * 256))).toString('base64')}`,
  ),
  n('versions', 'Upgraded node 22.11.0 -> 24.1.0, python 3.12.1, version 10.0.0.1 of the driver, v1.2.3.4'),
  n('version pins', 'requests==2.31.0.1 and lodash@4.17.21 and @anthropic-ai/sdk@0.30.1'),
  n('dates', 'Released 2024-01-15, updated 15/01/2024 and 01.02.2024 at 2024-01-15T10:30:00Z'),
  n('times', 'started 12:30:45, ended 13:01:02.123'),
  n('prose', 'The quick brown fox jumps over the lazy dog. Remember that passwords should be rotated every 90 days.'),
  n(
    'code with password variables',
    'const password = await getPassword();\nif (password.length < 8) throw new Error("weak");\nreturn hash(password);',
  ),
  n('typed fields', 'interface Login {\n  username: string;\n  password: string;\n  token?: string | null;\n}'),
  n(
    'python',
    'def login(username, password):\n    password = request.form["password"]\n    token = os.environ["TOKEN"]',
  ),
  n('env references', 'const token = process.env.GITHUB_TOKEN;\nPASSWORD=${DB_PASSWORD}\napi_key: $API_KEY'),
  n(
    'doc placeholders',
    'password=changeme\nAPI_KEY=your-api-key-here\ntoken: <YOUR_TOKEN>\nsecret: "xxxxxxxxxxxxxxxx"',
  ),
  n('usage counts', '{"max_tokens": 4096, "usage": {"input_tokens": 1234, "output_tokens": 56}}'),
  n('Claude Code tool definition', CLAUDE_CODE_TOOL),
  n('luhn-invalid card', 'card 4111 1111 1111 1112'),
  n('luhn-valid but no scheme', 'id 9111111111111111 and 1111111111111117'),
  n('millisecond timestamp', 'ts=1718236512345 and 1718236512345678901'),
  n('invalid iban checksum', 'IBAN DE89370400440532013001'),
  n('iban-like words', 'see section AB12 CDEF GHIJ KLMN'),
  n('invalid ssns', '000-12-3456 666-12-3456 912-34-5678 123-00-4567 123-45-0000 078-05-1120'),
  n('plain long numbers', 'order 123456789012 shipped; pi 3.14159265358979; 1,234,567.89'),
  n('loopback and private ips', 'listen 127.0.0.1:8080, 0.0.0.0, 192.168.1.10, 10.0.0.5, ::1 and [::]:80'),
  n('documentation ips', 'example 192.0.2.1, 198.51.100.7, 2001:db8::1'),
  n('mac address', 'ether 00:1a:2b:3c:4d:5e'),
  n('c++ scope', 'std::vector<int> v; Foo::bar(); a::b'),
  n('retina asset', 'logo@2x.png and icon@3x.webp'),
  n('git remote', 'git@github.com:anthropics/claude-code.git'),
  n('noreply', 'Co-Authored-By: Claude <noreply@anthropic.com>'),
  n('kebab identifiers', 'sk-learn is not a key; disk-usage-monitor-service-v2; task-runner-for-the-build-2024'),
  n('hex colours', 'color: #ff00aa; background: #0a0b0c'),
  n('sums', '4096 + 1024 = 5120; x = y +12'),
  n('hf identifiers', 'from huggingface_hub import hf_hub_download'),
  n('jwt-ish word', 'eyJhbGciOiJIUzI1NiJ9 is only a header'),
  n('bearer prose', 'Use bearer authentication for the API.'),
  n(
    'urls without passwords',
    'https://github.com/org/repo and http://localhost:3000/path?x=1 and postgres://localhost/app',
  ),
  n('url placeholder password', 'postgres://user:${PGPASSWORD}@localhost/app'),
  n('ratios and scores', 'scored 3:1, 10:30 am, a:b:c'),
];

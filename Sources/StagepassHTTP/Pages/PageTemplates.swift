/// The pages' Mustache templates, CSS and JavaScript, compiled into the binary (no build step, no CDN, nothing
/// to install beside it). `{{x}}` escapes HTML; `{{{body}}}` only ever receives another rendered template.
enum PageTemplates {
    static let all: [String: String] = [
        "layout": layout, "signin": signin, "factor": factor, "home": home, "factors": factors,
        "approvals": approvals, "approve": approve, "delegations": delegations, "keys": keys,
        "revocations": revocations, "audit": audit, "stepup": stepup, "message": message,
    ]

    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="csrf-token" content="{{csrf}}">
        <title>{{title}} · Stagepass</title>
        <link rel="stylesheet" href="/static/app.css">
        <script src="/static/app.js" defer></script>
        </head>
        <body>
        <header>
          <a class="brand" href="/">Stagepass</a>
          {{#user}}
          <nav>
            <a href="/approvals">Approvals</a>
            <a href="/delegations">Delegations</a>
            <a href="/factors">Factors</a>
            {{#admin}}<a href="/admin/keys">Keys</a><a href="/admin/revocations">Revocations</a><a href="/admin/audit">Audit</a>{{/admin}}
          </nav>
          <form method="post" action="/signout" class="inline">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <span class="who" id="who">{{name}}</span> <button type="submit" id="signout">Sign out</button>
          </form>
          {{/user}}
        </header>
        <main>
        {{#error}}<p class="error" role="alert" id="error">{{error}}</p>{{/error}}
        {{#notice}}<p class="notice" role="status" id="notice">{{notice}}</p>{{/notice}}
        {{{body}}}
        </main>
        </body>
        </html>
        """

    static let signin = """
        <h1>Sign in</h1>
        <form method="post" action="/signin" class="card" id="signin-form">
          <input type="hidden" name="csrf" value="{{csrf}}">
          <input type="hidden" name="next" value="{{next}}">
          <label>User name <input name="user" id="user" autocomplete="username" required maxlength="256"></label>
          <label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>
          <button type="submit" id="signin-submit">Continue</button>
        </form>
        """

    static let factor = """
        <h1>Second factor</h1>
        <p>Signing in as <b>{{account}}</b>. Choose one of your factors.</p>
        {{#webauthn}}
        <section class="card">
          <h2>Security key</h2>
          <button type="button" id="webauthn-signin" data-next="{{next}}">Use my security key</button>
          <p class="muted" id="webauthn-status"></p>
        </section>
        {{/webauthn}}
        {{#totp}}
        <form method="post" action="/signin/factor" class="card" id="totp-form">
          <h2>Authenticator app</h2>
          <input type="hidden" name="csrf" value="{{csrf}}">
          <input type="hidden" name="next" value="{{next}}">
          <input type="hidden" name="method" value="totp">
          <label>6-digit code <input name="code" id="totp-code" inputmode="numeric" autocomplete="one-time-code" required maxlength="8"></label>
          <button type="submit" id="totp-submit">Verify</button>
        </form>
        {{/totp}}
        {{#backup}}
        <form method="post" action="/signin/factor" class="card">
          <h2>Backup code</h2>
          <input type="hidden" name="csrf" value="{{csrf}}">
          <input type="hidden" name="next" value="{{next}}">
          <input type="hidden" name="method" value="backup">
          <label>One-time backup code <input name="code" autocomplete="off" required maxlength="32"></label>
          <button type="submit">Verify</button>
        </form>
        {{/backup}}
        """

    static let home = """
        <h1>Signed in as {{name}}</h1>
        <dl class="card">
          <dt>Groups</dt><dd>{{groups}}</dd>
          <dt>Roles</dt><dd>{{roles}}</dd>
          <dt>Factors this session</dt><dd id="amr">{{amr}}</dd>
          <dt>Last factor proved</dt><dd>{{authAge}} ago</dd>
        </dl>
        <p><a href="/approvals" id="pending-link">{{pending}} pending approval(s)</a></p>
        """

    static let factors = """
        <h1>Your factors</h1>
        <table id="factor-table">
          <thead><tr><th>Kind</th><th>Name</th><th>State</th><th>Added</th><th>Last used</th><th>Remove (needs a code or key)</th></tr></thead>
          <tbody>
          {{#factors}}
          <tr>
            <td>{{kind}}</td><td>{{label}}</td><td>{{state}}</td><td>{{created}}</td><td class="last-used">{{lastUsed}}</td>
            <td>
              <form method="post" action="/factors/{{id}}/remove" class="inline">
                <input type="hidden" name="csrf" value="{{csrf}}">
                <input name="code" placeholder="TOTP or backup code" autocomplete="off" required maxlength="32">
                <button type="submit">Remove</button>
              </form>
            </td>
          </tr>
          {{/factors}}
          </tbody>
        </table>
        <p>Backup codes left: {{backupLeft}}{{#backupLastUsed}} (last used {{backupLastUsed}}){{/backupLastUsed}}</p>
        <p class="muted" id="change-rule">Adding or removing a factor needs one of your active factors proved in the last {{changeWindow}}; you will be asked to confirm first.</p>

        <section class="card">
          <h2>Security keys (FIDO2 / WebAuthn)</h2>
          <p>Phishing-resistant: the key signs only for this site.</p>
          <label>Name <input id="key-name" value="Security key" maxlength="64"></label>
          <button type="button" id="webauthn-register">Register a security key</button>
          <p class="muted" id="webauthn-status"></p>
        </section>

        <section class="card">
          <h2>Authenticator app (TOTP)</h2>
          {{#enrolment}}
          <p>Scan this code with your authenticator app, or type the secret, then enter the first code.</p>
          <img id="totp-qr" alt="QR code of the TOTP enrolment" src="{{qr}}" width="220" height="220">
          <p>Secret: <code id="totp-secret">{{secret}}</code></p>
          <form method="post" action="/factors/totp/confirm">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <label>First code <input name="code" inputmode="numeric" autocomplete="one-time-code" required maxlength="8"></label>
            <button type="submit">Activate</button>
          </form>
          {{/enrolment}}
          {{^enrolment}}
          <form method="post" action="/factors/totp">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <button type="submit" id="totp-enrol">Add an authenticator app</button>
          </form>
          {{/enrolment}}
        </section>

        <section class="card">
          <h2>Backup codes</h2>
          {{#hasCodes}}
          <p>Write these down now; they are shown once and each works once.</p>
          <ul class="codes" id="backup-codes">{{#codes}}<li><code>{{.}}</code></li>{{/codes}}</ul>
          {{/hasCodes}}
          <form method="post" action="/factors/backup-codes">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <button type="submit">Generate new backup codes (the old ones stop working)</button>
          </form>
        </section>
        """

    static let approvals = """
        <h1>Pending approvals</h1>
        {{^hasRequests}}<p id="no-requests">Nothing is waiting for you.</p>{{/hasRequests}}
        {{#hasRequests}}
        <table id="requests">
          <thead><tr><th>Code</th><th>Pipeline</th><th>Run</th><th>Role @ stage</th><th>Audience</th><th>Approvals</th></tr></thead>
          <tbody>
          {{#requests}}
          <tr><td><a href="/approve?code={{userCode}}">{{userCode}}</a></td><td>{{client}}</td><td>{{runId}}</td><td>{{role}} @ {{stage}}</td><td>{{audience}}</td><td>{{count}}/{{needed}}</td></tr>
          {{/requests}}
          </tbody>
        </table>
        {{/hasRequests}}
        <form method="get" action="/approve" class="card">
          <label>Code from a pipeline <input name="code" placeholder="BCDF-GHJK" maxlength="16" required></label>
          <button type="submit">Open</button>
        </form>
        """

    static let approve = """
        <h1>Pipeline run {{runId}}</h1>
        <dl class="card" id="request">
          <dt>Pipeline</dt><dd id="r-client">{{client}}</dd>
          <dt>Run</dt><dd id="r-run">{{runId}}</dd>
          <dt>Commit</dt><dd><code id="r-commit">{{commit}}</code></dd>
          <dt>Triggered by</dt><dd>{{triggeredBy}}</dd>
          <dt>Role</dt><dd id="r-role">{{role}}</dd>
          <dt>Stage</dt><dd id="r-stage">{{stage}}</dd>
          <dt>Audience</dt><dd id="r-audience">{{audience}}</dd>
          <dt>Token lifetime</dt><dd id="r-lifetime">{{lifetime}}</dd>
          <dt>Approvals</dt><dd id="r-approvals">{{count}} of {{needed}}{{#hasApprovers}}: {{#approvers}}{{.}} {{/approvers}}{{/hasApprovers}}</dd>
          <dt>Who else may approve</dt><dd id="r-others">{{others}}</dd>
          <dt>State</dt><dd id="r-state">{{state}}</dd>
          <dt>Code</dt><dd><code>{{userCode}}</code> (expires in {{expiresIn}})</dd>
        </dl>
        {{#pending}}
        <section class="card">
          <h2>Approve</h2>
          {{#fresh}}
          <form method="post" action="/approve/{{userCode}}">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <button type="submit" id="approve-submit" class="approve">Approve this run</button>
          </form>
          {{/fresh}}
          {{^fresh}}
          <p id="needs">{{needs}}</p>
          {{#allowsKey}}
          <button type="button" id="webauthn-approve" data-code="{{userCode}}" class="approve">Approve with my security key</button>
          <p class="muted" id="webauthn-status"></p>
          {{/allowsKey}}
          {{#allowsTotp}}
          <form method="post" action="/approve/{{userCode}}">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <label>Code from your authenticator app <input name="code" id="approve-code" inputmode="numeric" autocomplete="one-time-code" required maxlength="8"></label>
            <button type="submit" id="approve-totp" class="approve">Approve with this code</button>
          </form>
          {{/allowsTotp}}
          {{/fresh}}
        </section>
        <form method="post" action="/deny/{{userCode}}" class="card">
          <input type="hidden" name="csrf" value="{{csrf}}">
          <label>Reason <input name="reason" maxlength="500"></label>
          <button type="submit" id="deny-submit" class="deny">Deny this run</button>
        </form>
        {{/pending}}
        """

    static let delegations = """
        <h1>Delegations</h1>
        <p>A delegation lets one pipeline obtain tokens for one stage without asking you for every run, for a bounded
        time, where the policy allows it ({{delegable}}).</p>
        <form method="post" action="/delegations" class="card">
          <input type="hidden" name="csrf" value="{{csrf}}">
          <label>Pipeline <input name="client" required maxlength="128"></label>
          <label>Role <input name="role" required maxlength="128"></label>
          <label>Stage <input name="stage" required maxlength="128"></label>
          <label>Audience <input name="audience" required maxlength="256"></label>
          <label>Hours <input name="hours" type="number" min="1" max="720" value="8" required></label>
          <button type="submit">Delegate</button>
        </form>
        {{^hasItems}}<p id="no-delegations">You have no live delegation.</p>{{/hasItems}}
        {{#hasItems}}
        <table id="delegations">
          <thead><tr><th>Pipeline</th><th>Role @ stage</th><th>Audience</th><th>Until</th><th></th></tr></thead>
          <tbody>{{#items}}<tr><td>{{client}}</td><td>{{role}} @ {{stage}}</td><td>{{audience}}</td><td>{{until}}</td>
            <td><form method="post" action="/delegations/{{id}}/revoke" class="inline">
              <input type="hidden" name="csrf" value="{{csrf}}">
              <button type="submit" class="deny" id="revoke-{{id}}">Revoke</button>
            </form></td></tr>{{/items}}</tbody>
        </table>
        {{/hasItems}}
        """

    static let keys = """
        <h1>Signing keys</h1>
        <table id="keys">
          <thead><tr><th>kid</th><th>alg</th><th>State</th><th>Created</th><th>Activates</th><th>Retires</th></tr></thead>
          <tbody>{{#keys}}<tr><td><code>{{kid}}</code></td><td>{{alg}}</td><td class="state-{{state}}">{{state}}</td><td>{{created}}</td><td>{{activates}}</td><td>{{retires}}</td></tr>{{/keys}}</tbody>
        </table>
        <form method="post" action="/admin/keys/rotate" class="card">
          <input type="hidden" name="csrf" value="{{csrf}}">
          <label><input type="checkbox" name="force" value="1" id="force"> Force: promote a next key published for
            less than the pre-publication window (verifiers with an older cached JWKS reject its tokens for a while)</label>
          <button type="submit" id="rotate">Rotate now</button>
        </form>
        """

    static let revocations = """
        <h1>Revocations</h1>
        <form method="post" action="/admin/revocations" class="card">
          <input type="hidden" name="csrf" value="{{csrf}}">
          <label>What
            <select name="kind"><option value="jti">one token (jti)</option><option value="session">a session (sid)</option><option value="user">every token of a user</option></select>
          </label>
          <label>Value <input name="value" required maxlength="256"></label>
          <label>Reason <input name="reason" maxlength="500"></label>
          <button type="submit" id="revoke">Revoke</button>
        </form>
        <p>Revoked tokens in the current status list: {{revokedCount}}.</p>
        """

    static let audit = """
        <h1>Audit log</h1>
        <form method="get" action="/admin/audit" class="card filters">
          <label>User <input name="user" value="{{f.user}}"></label>
          <label>Pipeline <input name="pipeline" value="{{f.pipeline}}"></label>
          <label>Stage <input name="stage" value="{{f.stage}}"></label>
          <label>Result <select name="result"><option value="">any</option><option value="success">success</option><option value="failure">failure</option><option value="denied">denied</option></select></label>
          <button type="submit">Filter</button>
        </form>
        <form method="post" action="/admin/audit/verify" class="card">
          <input type="hidden" name="csrf" value="{{csrf}}">
          <button type="submit" id="verify-chain">Verify the hash chain</button>
        </form>
        <table id="audit">
          <thead><tr><th>#</th><th>Time</th><th>Action</th><th>Actor</th><th>Subject</th><th>Result</th><th>Factors</th><th>Details</th></tr></thead>
          <tbody>{{#rows}}<tr class="result-{{result}}"><td>{{seq}}</td><td>{{time}}</td><td>{{action}}</td><td>{{actor}}</td><td>{{subject}}</td><td>{{result}}{{#reason}}: {{reason}}{{/reason}}</td><td>{{factors}}</td><td>{{details}}</td></tr>{{/rows}}</tbody>
        </table>
        """

    static let stepup = """
        <h1>Confirm it is you</h1>
        <p>{{why}}</p>
        <form method="post" action="/stepup" class="card">
          <input type="hidden" name="csrf" value="{{csrf}}">
          <input type="hidden" name="next" value="{{next}}">
          <label>Code from your authenticator app (or a backup code) <input name="code" autocomplete="one-time-code" required maxlength="32"></label>
          <button type="submit" id="stepup-submit">Confirm</button>
        </form>
        {{#webauthn}}
        <section class="card">
          <button type="button" id="webauthn-stepup" data-next="{{next}}">Confirm with my security key</button>
          <p class="muted" id="webauthn-status"></p>
        </section>
        {{/webauthn}}
        """

    static let message = """
        <h1>{{heading}}</h1>
        <p id="message">{{text}}</p>
        <p><a href="{{link}}">{{linkText}}</a></p>
        """

    static let css = """
        :root { color-scheme: light dark; --accent: #2456a6; --ok: #1f7a3a; --bad: #a62424; }
        * { box-sizing: border-box; }
        body { font: 16px/1.45 system-ui, sans-serif; margin: 0; }
        header { display: flex; gap: 1.5rem; align-items: center; padding: .75rem 1.5rem; border-bottom: 1px solid #8884; flex-wrap: wrap; }
        header nav { display: flex; gap: 1rem; flex: 1; }
        .brand { font-weight: 700; text-decoration: none; }
        main { max-width: 62rem; margin: 1.5rem auto; padding: 0 1.5rem; }
        .card { border: 1px solid #8884; border-radius: .5rem; padding: 1rem 1.25rem; margin: 1rem 0; }
        label { display: block; margin: .5rem 0; }
        input, select { font: inherit; padding: .3rem .4rem; margin-left: .4rem; }
        button { font: inherit; padding: .35rem .9rem; cursor: pointer; }
        .inline { display: inline; }
        .approve { background: var(--ok); color: #fff; border: 0; border-radius: .3rem; }
        .deny { background: var(--bad); color: #fff; border: 0; border-radius: .3rem; }
        .error { border-left: 4px solid var(--bad); padding: .5rem 1rem; background: #a624241a; }
        .notice { border-left: 4px solid var(--ok); padding: .5rem 1rem; background: #1f7a3a1a; }
        .muted { opacity: .7; }
        table { border-collapse: collapse; width: 100%; font-size: .92rem; }
        th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #8883; vertical-align: top; }
        dl { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; }
        dt { font-weight: 600; }
        dd { margin: 0; }
        code { word-break: break-all; }
        .result-denied td, .result-failure td { color: var(--bad); }
        .state-active { color: var(--ok); font-weight: 600; }
        .state-compromised { color: var(--bad); font-weight: 600; }
        .codes { columns: 2; }
        .filters label { display: inline-block; margin-right: 1rem; }
        """
}

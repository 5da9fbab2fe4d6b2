/**
 * `GET /dashboard`: the admin dashboard (server-rendered HTML, inline SVG, no scripts).
 *
 * Access needs the admin token, given one of these ways:
 * - `Authorization: Bearer <token>` (scripts, curl);
 * - the sign-in form: `POST /dashboard` with the token in the form body, or `/dashboard?token=<token>` once;
 *   both answer with a redirect to `/dashboard` that sets an HttpOnly, SameSite=Strict cookie, so the token
 *   never stays in the address bar or history;
 * - that cookie, which holds a digest of the token (never the token itself); changing ADMIN_TOKEN voids it.
 * Without one, a 401 page with the sign-in form.
 *
 * POSTs are CSRF-safe: Hono's `csrf()` refuses (403) a form POST whose `Origin` is not this origin and whose
 * `Sec-Fetch-Site` is not `same-origin`, on top of SameSite=Strict.
 */

import { type Context, Hono } from "hono";
import { getCookie, setCookie } from "hono/cookie";
import { csrf } from "hono/csrf";
import { BODY_LIMITS, readFormBody } from "../../http/body";
import { parseBearer } from "../../http/credentials";
import { HttpError } from "../../http/errors";
import { timingSafeStringEqual } from "../../registry/auth";
import { registryConfig } from "../../registry/config";
import type { Env } from "../env";
import { escapeHtml } from "./charts";
import { loadDashboard, renderDashboard } from "./page";

export const DASHBOARD_COOKIE = "sluice_dashboard";

async function cookieValueFor(token: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`sluice-dashboard:${token}`));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const SECURITY_HEADERS = {
  "Cache-Control": "no-store",
  "Content-Security-Policy":
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
};

function loginPage(message: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sluice dashboard: sign in</title></head>
<body style="font:14px system-ui,sans-serif;margin:40px"><h1>Sluice dashboard</h1><p>${escapeHtml(message)}</p>
<form method="post" action="/dashboard"><label>Admin token <input type="password" name="token" autocomplete="off" required></label>
<button type="submit">Open</button></form></body></html>`;
}

type Ctx = Context<{ Bindings: Env }>;

const disabled = (c: Ctx) =>
  c.html(loginPage("The dashboard is disabled: ADMIN_TOKEN is not configured."), 503, SECURITY_HEADERS);

/** Checks a sign-in token; on success sets the cookie and redirects to the bare `/dashboard`. */
async function signIn(c: Ctx, token: string, expected: string): Promise<Response> {
  if (!(await timingSafeStringEqual(token, expected))) {
    return c.html(loginPage("That token is not the admin token."), 401, SECURITY_HEADERS);
  }
  setCookie(c, DASHBOARD_COOKIE, await cookieValueFor(expected), {
    httpOnly: true,
    sameSite: "Strict",
    secure: new URL(c.req.url).protocol === "https:",
    path: "/dashboard",
    maxAge: 12 * 60 * 60,
  });
  return c.redirect("/dashboard", 303);
}

export function createDashboardRoutes() {
  const r = new Hono<{ Bindings: Env }>();

  r.post("/dashboard", csrf(), async (c: Ctx) => {
    const expected = registryConfig(c.env).adminToken;
    if (!expected) return disabled(c);
    const type = c.req.header("content-type") ?? "";
    let form: FormData | null = null;
    if (/^application\/x-www-form-urlencoded\b/i.test(type)) {
      try {
        form = await readFormBody(c, BODY_LIMITS.formBytes);
      } catch (err) {
        if (err instanceof HttpError && err.status === 413) {
          return c.html(loginPage("The form is too large."), 413, SECURITY_HEADERS);
        }
        form = null;
      }
    }
    const token = form?.get("token");
    if (typeof token !== "string" || token === "") {
      return c.html(
        loginPage("Send the admin token as the form field 'token' (application/x-www-form-urlencoded)."),
        400,
        SECURITY_HEADERS,
      );
    }
    return signIn(c, token, expected);
  });

  r.get("/dashboard", async (c: Ctx) => {
    const expected = registryConfig(c.env).adminToken;
    if (!expected) return disabled(c);

    const queryToken = c.req.query("token");
    if (queryToken !== undefined) return signIn(c, queryToken, expected);

    const credential = parseBearer(c.req.header("Authorization"));
    const header = credential.kind === "token" ? credential.token : undefined;
    const cookie = getCookie(c, DASHBOARD_COOKIE);
    const authorised =
      (header !== undefined && (await timingSafeStringEqual(header, expected))) ||
      (cookie !== undefined && (await timingSafeStringEqual(cookie, await cookieValueFor(expected))));
    if (!authorised) {
      return c.html(
        loginPage(
          credential.kind !== "missing" || cookie
            ? "That token is not the admin token."
            : "Enter the admin token to continue.",
        ),
        401,
        { ...SECURITY_HEADERS, "WWW-Authenticate": 'Bearer realm="sluice-dashboard"' },
      );
    }
    return c.html(renderDashboard(await loadDashboard(c.env.DB)), 200, SECURITY_HEADERS);
  });

  return r;
}

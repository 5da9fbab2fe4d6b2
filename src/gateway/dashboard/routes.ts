/**
 * `GET /dashboard`: the admin dashboard (server-rendered HTML, inline SVG, no scripts).
 *
 * Access needs the admin token, given one of three ways:
 * - `Authorization: Bearer <token>` (scripts, curl);
 * - `/dashboard?token=<token>` once, from a browser: answered with a redirect to `/dashboard` that sets an
 *   HttpOnly, SameSite=Strict cookie, so the token leaves the address bar and history at once;
 * - that cookie, which holds a digest of the token (never the token itself); changing ADMIN_TOKEN voids it.
 * Without one, a 401 page with a small token form.
 */

import { type Context, Hono } from "hono";
import { getCookie, setCookie } from "hono/cookie";
import { bearerToken, timingSafeStringEqual } from "../../registry/auth";
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
<form method="get" action="/dashboard"><label>Admin token <input type="password" name="token" autocomplete="off" required></label>
<button type="submit">Open</button></form></body></html>`;
}

export function createDashboardRoutes() {
  const r = new Hono<{ Bindings: Env }>();

  r.get("/dashboard", async (c: Context<{ Bindings: Env }>) => {
    const expected = c.env.ADMIN_TOKEN;
    if (!expected)
      return c.html(
        loginPage("The dashboard is disabled: ADMIN_TOKEN is not configured."),
        503,
        SECURITY_HEADERS,
      );

    const queryToken = c.req.query("token");
    if (queryToken !== undefined) {
      if (!(await timingSafeStringEqual(queryToken, expected))) {
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

    const header = bearerToken(c.req.header("Authorization"));
    const cookie = getCookie(c, DASHBOARD_COOKIE);
    const authorised =
      (header !== undefined && (await timingSafeStringEqual(header, expected))) ||
      (cookie !== undefined && (await timingSafeStringEqual(cookie, await cookieValueFor(expected))));
    if (!authorised) {
      return c.html(
        loginPage(
          header || cookie ? "That token is not the admin token." : "Enter the admin token to continue.",
        ),
        401,
        { ...SECURITY_HEADERS, "WWW-Authenticate": 'Bearer realm="sluice-dashboard"' },
      );
    }
    return c.html(renderDashboard(await loadDashboard(c.env.DB)), 200, SECURITY_HEADERS);
  });

  return r;
}

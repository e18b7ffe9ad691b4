// Sign-in for the chat page (PTS_AUTH=jwt): OAuth 2.0 authorization code with PKCE (S256)
// against whichever issuer the app names in <meta name="pts-sign-in"> — Cognito's managed
// login on AWS, the local issuer's one-field dev login in `make dev`.
//
// The token is kept in sessionStorage (this tab only, gone with it), never in a URL: the
// issuer sends back a one-use code, bound to this tab's PKCE verifier, and the page removes
// it from the address bar before redeeming it. The WebSocket gets the token as `?token=`
// (browsers cannot set headers on one), which is what the $connect authorizer reads.

const TOKEN_KEY = "pts.signIn.token";
const FLOW_KEY = "pts.signIn.flow";
const EXPIRY_MARGIN_S = 30;

function base64url(bytes) {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(bytes = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

async function s256(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** The claims of a JWT (unverified: the server verifies; the page only reads `exp`). */
function claimsOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload));
  } catch {
    return {};
  }
}

export class SignIn {
  /** @param {{issuer: string, clientId: string, authorizationEndpoint?: string, tokenEndpoint?: string} | null} config */
  constructor(config) {
    this.config = config;
    this.redirectUri = location.origin + location.pathname;
  }

  /** The app's sign-in configuration from the page (null: no sign-in, PTS_AUTH=none). */
  static fromPage(doc = document) {
    const content = doc.querySelector('meta[name="pts-sign-in"]')?.content.trim() ?? "";
    if (!content || content.startsWith("{{")) return new SignIn(null);
    try {
      return new SignIn(JSON.parse(content));
    } catch {
      return new SignIn(null);
    }
  }

  get required() {
    return this.config !== null;
  }

  get available() {
    return Boolean(this.config?.authorizationEndpoint && this.config?.tokenEndpoint);
  }

  /** The signed-in token, or null (none, or it expires within half a minute). */
  get token() {
    let token = null;
    try { token = sessionStorage.getItem(TOKEN_KEY); } catch { return null; }
    if (!token) return null;
    const { exp } = claimsOf(token);
    if (typeof exp === "number" && exp - EXPIRY_MARGIN_S < Date.now() / 1000) {
      this.signOut();
      return null;
    }
    return token;
  }

  /** Who is signed in (the token's `sub`, or its e-mail when it has one). */
  get user() {
    const token = this.token;
    if (!token) return null;
    const claims = claimsOf(token);
    return claims.email || claims.preferred_username || claims.sub || null;
  }

  /** Go to the issuer's login; it comes back to this page with `?code=…&state=…`. */
  async start() {
    if (!this.available) throw new Error("the issuer cannot be reached; try again later");
    const verifier = randomString(48);
    const state = randomString(16);
    const nonce = randomString(16);
    sessionStorage.setItem(FLOW_KEY, JSON.stringify({ verifier, state, nonce }));
    const url = new URL(this.config.authorizationEndpoint);
    url.search = new URLSearchParams({
      response_type: "code",
      client_id: this.config.clientId,
      redirect_uri: this.redirectUri,
      scope: "openid email",
      state,
      nonce,
      code_challenge: await s256(verifier),
      code_challenge_method: "S256",
    }).toString();
    location.assign(url.toString());
  }

  /**
   * Back from the issuer: redeem the code (once, for this tab's verifier) and keep the token.
   * Does nothing on an ordinary visit. The code and state leave the address bar at once.
   */
  async finish() {
    const params = new URLSearchParams(location.search);
    if (!params.has("code") && !params.has("error")) return false;
    history.replaceState(null, "", this.redirectUri);
    let flow = null;
    try { flow = JSON.parse(sessionStorage.getItem(FLOW_KEY)); } catch { /* none */ }
    sessionStorage.removeItem(FLOW_KEY);
    if (params.has("error")) {
      throw new Error(params.get("error_description") || params.get("error"));
    }
    if (!flow || params.get("state") !== flow.state) {
      throw new Error("this sign-in was not started here (state mismatch): sign in again");
    }
    const response = await fetch(this.config.tokenEndpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: params.get("code"),
        redirect_uri: this.redirectUri,
        client_id: this.config.clientId,
        code_verifier: flow.verifier,
      }),
    });
    const tokens = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(tokens.error_description || tokens.error || `sign-in failed (${response.status})`);
    }
    // The ID token: its audience is always this client, whatever the issuer puts in access
    // tokens; the API verifies it like any other.
    const token = tokens.id_token || tokens.access_token;
    if (!token) throw new Error("the issuer returned no token");
    if (tokens.id_token && claimsOf(tokens.id_token).nonce !== flow.nonce) {
      throw new Error("the token was not issued for this sign-in (nonce mismatch)");
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    return true;
  }

  signOut() {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* storage disabled */ }
  }

  /** A WebSocket URL carrying the token (`?token=`), as the $connect authorizer wants it. */
  socketUrl(url) {
    const token = this.token;
    if (!url || !token) return url;
    const withToken = new URL(url);
    withToken.searchParams.set("token", token);
    return withToken.toString();
  }
}

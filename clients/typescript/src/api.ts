// The typed client: paths and schemas generated from openapi/openapi.json by
// openapi-typescript (into src/generated/, not committed), requests made by openapi-fetch.

import createClient, { type Client } from "openapi-fetch";

import type { components, paths } from "./generated/api.js";

export type Schemas = components["schemas"];
export type Api = Client<paths>;

/** A client of the API at `baseUrl`, sending `token` (an access token, a participant's manage
 * token or a device key) as a bearer token when given. */
export function api(baseUrl: string, token?: string): Api {
  return createClient<paths>({
    baseUrl,
    headers: token === undefined ? {} : { Authorization: `Bearer ${token}` },
  });
}

/** The body of a successful answer; an error naming the problem otherwise. */
export function ok<T>(
  answer: { data?: T; error?: unknown; response: Response },
  what: string,
): T {
  if (answer.data === undefined) {
    throw new Error(
      `${what}: ${answer.response.status} ${JSON.stringify(answer.error)}`,
    );
  }
  return answer.data;
}

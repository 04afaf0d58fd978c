import { describe, expect, it } from "vitest";
import { renewDelayMs, retryDelayMs } from "./auth";

describe("token renewal timing", () => {
  it("renews at three quarters of the remaining lifetime", () => {
    expect(renewDelayMs(300)).toBe(225_000); // Keycloak's 5 min: after 3.75 min
    expect(renewDelayMs(10)).toBe(7_500); // a 10 s token: after 7.5 s, not in a loop
    expect(renewDelayMs(0)).toBe(1_000); // already out: at once (1 s), never a negative timer
  });
  it("retries with backoff, always before the token runs out", () => {
    expect(retryDelayMs(60, 0)).toBe(2_000);
    expect(retryDelayMs(60, 3)).toBe(16_000);
    expect(retryDelayMs(10, 5)).toBe(5_000); // half of what is left
    expect(retryDelayMs(0.5, 0)).toBeNull(); // too late: the gateway will ask for a login
  });
});

import { useEffect, useState } from "preact/hooks";
import type { LiveClient } from "../../api/live";
import type { LiveState } from "../../state/live/reducer";

/** The live state of a client, re-rendering on every change. */
export function useLiveState(client: LiveClient): LiveState {
  const [state, setState] = useState(client.getState());
  useEffect(() => client.subscribe(setState), [client]);
  return state;
}

/** A clock (ms) that ticks every `periodMs`, so ages count up between updates. */
export function useNow(periodMs = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), periodMs);
    return () => clearInterval(t);
  }, [periodMs]);
  return now;
}

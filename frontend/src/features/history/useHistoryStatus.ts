import { useEffect, useState } from "preact/hooks";
import { fetchHistoryStatus, type HistoryStatus } from "./api";

/** null while asking; then whether history is on (and why not). */
export function useHistoryStatus(): HistoryStatus | null {
  const [status, setStatus] = useState<HistoryStatus | null>(null);
  useEffect(() => {
    let gone = false;
    fetchHistoryStatus()
      .then((s) => !gone && setStatus(s))
      .catch((e: unknown) => !gone && setStatus({ enabled: false, message: e instanceof Error ? e.message : String(e), retention_days: null }));
    return () => {
      gone = true;
    };
  }, []);
  return status;
}

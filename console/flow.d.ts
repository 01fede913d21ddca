/** Types for console/flow.js (plain JavaScript for the browser), so TypeScript tests can import it. */
export interface FlowStep {
  name: string;
  file: string;
  state: 'passed' | 'review' | 'declined';
  text: string;
}

export function requestFlow(input: {
  payment: unknown;
  ledgerEntries: unknown[];
  refunds?: unknown[];
  /** The payment page shows at most 100 entries and refunds: true when there were more. */
  partial?: boolean;
}): FlowStep[];

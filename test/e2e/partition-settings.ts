/**
 * Settings shared by the partition scenario (which runs the balancer with
 * them) and its test (which derives the asserted bound from them).
 *
 * @module
 */
import { balancerDefaults } from '../../src/cli/config.js';

/** The probe settings the balancer runs with in the scenario. */
export const probeSettings = Object.freeze({ interval: 500, timeout: 500, fall: 2, rise: 2 });

/** Slack on top of what the settings imply, in ms: the machine may be loaded. A safety net, not a speed claim. */
export const slackMs = 8000;

/** The longest detection plus recovery may take: fall × interval + timeout + slack. */
export const recoveryBoundMs = probeSettings.fall * probeSettings.interval + probeSettings.timeout + slackMs;

/** The balancer's defaults the heal depends on (the scenario does not set them): `--slow-start` ms, `--rebalance-rate` per second. */
export const healDefaults = Object.freeze({ slowStart: balancerDefaults.slowStart, rebalanceRate: balancerDefaults.rebalanceRate });

/** Streams of the 60 that must move back to the healed backend at most (its even share). */
const toMove = 20;

/**
 * After the partition heals, how long the balancer may take to spread the
 * streams again, derived from what it is configured to do: the checks that
 * bring the backend up (`rise × interval`), the slow start, moving its share
 * back at the rebalancing rate, and the same slack as detection. (It was a
 * fixed 24 s, which is what these settings add up to.)
 */
export const healBoundMs =
  probeSettings.rise * probeSettings.interval + healDefaults.slowStart + (toMove / healDefaults.rebalanceRate) * 1000 + slackMs;

/** Streams each of the three backends must carry once spread again (of 60; an even share is 20). */
export const healSpread = Object.freeze({ min: 15, max: 25 });

/** The scenario's cases. */
export const scenarioCases = ['partition', 'rejoin', 'sigstop'] as const;
export type ScenarioCase = (typeof scenarioCases)[number];

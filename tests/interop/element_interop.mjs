// Element's crypto stack against the bot: matrix-js-sdk with its Rust crypto (the code inside
// Element Web and Tchap Web) as a real user on the test Synapse.
//
// Input: one JSON argument
//   {"homeserver": URL, "bot_user_id": ..., "bot_device_id": ..., "timeout_ms": N,
//    "runs": [{"mode": "default" | "exclude_insecure", "user_id", "password", "access_token",
//              "device_id", "kinds": ["room", "dm"], "accept_failure": false}]}
// Output (stdout, last line): {"runs": [{mode, rooms: [...], bot_device: {...}, errors: [...]}]}
// For each of its `kinds` a run creates an encrypted group room or DM with the bot, sends a
// question, waits for the bot's reply (found by its clear `m.relates_to`), decrypts it, and
// reports what Element would show. `accept_failure` reports an undecryptable reply instead of
// waiting for its key until the deadline.
// Runs execute concurrently, each with its own client and in-memory crypto store.

import * as sdk from "matrix-js-sdk";
import {
  AllDevicesIsolationMode,
  EventShieldColour,
  EventShieldReason,
  OnlySignedDevicesIsolationMode,
} from "matrix-js-sdk/lib/crypto-api/index.js";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("error"); // the SDK is chatty; stdout carries our JSON only

const config = JSON.parse(process.argv[2]);
const deadline = Date.now() + config.timeout_ms;

function remaining() {
  return Math.max(0, deadline - Date.now());
}

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout: ${what}`)), remaining());
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function waitForSync(client) {
  if (client.isInitialSyncComplete()) return;
  await withTimeout(
    new Promise((resolve) => {
      const onSync = (state) => {
        if (state === "PREPARED" || state === "SYNCING") {
          client.off(sdk.ClientEvent.Sync, onSync);
          resolve();
        }
      };
      client.on(sdk.ClientEvent.Sync, onSync);
    }),
    "initial sync",
  );
}

/** Resolve with the first timeline event of `roomId` for which `predicate(event)` is true. */
function waitForTimelineEvent(client, roomId, predicate, what) {
  return withTimeout(
    new Promise((resolve) => {
      const check = async (event) => {
        if (event.getRoomId() !== roomId) return;
        await client.decryptEventIfNeeded(event);
        if (predicate(event)) {
          client.off(sdk.RoomEvent.Timeline, onTimeline);
          resolve(event);
        }
      };
      const onTimeline = (event) => {
        check(event).catch(() => {});
      };
      client.on(sdk.RoomEvent.Timeline, onTimeline);
      const room = client.getRoom(roomId);
      for (const event of room ? room.getLiveTimeline().getEvents() : []) {
        check(event).catch(() => {});
      }
    }),
    what,
  );
}

/** Wait until the event is decrypted; with `acceptFailure`, a settled failure also ends it. */
function waitForDecryption(event, acceptFailure) {
  const settled = () =>
    !event.isBeingDecrypted() &&
    (event.getClearContent() !== null || (acceptFailure && event.isDecryptionFailure()));
  if (settled()) return Promise.resolve(event);
  return withTimeout(
    new Promise((resolve) => {
      const done = () => {
        if (settled()) resolve(event);
      };
      event.on(sdk.MatrixEventEvent.Decrypted, done);
      done();
    }),
    "decrypting the bot's answer",
  );
}

async function waitForBotJoin(client, roomId) {
  const joined = () => client.getRoom(roomId)?.getMember(config.bot_user_id)?.membership === "join";
  if (joined()) return;
  await waitForTimelineEvent(
    client,
    roomId,
    (event) =>
      event.getType() === "m.room.member" &&
      event.getStateKey() === config.bot_user_id &&
      event.getContent().membership === "join",
    "bot joining",
  );
}

async function createEncryptedRoom(client, isDirect) {
  const { room_id: roomId } = await client.createRoom({
    invite: [config.bot_user_id],
    is_direct: isDirect,
    preset: isDirect ? "trusted_private_chat" : "private_chat",
    name: isDirect ? undefined : "Interop Element",
    initial_state: [
      {
        type: "m.room.encryption",
        state_key: "",
        content: { algorithm: "m.megolm.v1.aes-sha2" },
      },
    ],
  });
  if (isDirect) {
    await client.setAccountData("m.direct", { [config.bot_user_id]: [roomId] });
  }
  return roomId;
}

async function exchange(client, crypto, isDirect, mode, acceptFailure) {
  const kind = isDirect ? "dm" : "room";
  const roomId = await createEncryptedRoom(client, isDirect);
  await waitForBotJoin(client, roomId);
  const question = `Question ${kind} ${mode} depuis Element`;
  const content = isDirect
    ? { msgtype: "m.text", body: question }
    : {
        msgtype: "m.text",
        body: `${config.bot_user_id} ${question}`,
        format: "org.matrix.custom.html",
        formatted_body: `<a href="https://matrix.to/#/${config.bot_user_id}">Assistant</a> ${question}`,
        "m.mentions": { user_ids: [config.bot_user_id] },
      };
  const { event_id: questionId } = await client.sendMessage(roomId, content);
  // Relations stay in clear (wire content): the bot's reply is found even if undecryptable.
  const answer = await waitForTimelineEvent(
    client,
    roomId,
    (event) =>
      event.getSender() === config.bot_user_id &&
      event.getWireContent()["m.relates_to"]?.["m.in_reply_to"]?.event_id === questionId,
    `bot answer in ${kind}`,
  );
  await waitForDecryption(answer, acceptFailure);
  const info = await crypto.getEncryptionInfoForEvent(answer);
  return {
    kind,
    room_id: roomId,
    question_event_id: questionId,
    answer_event_id: answer.getId(),
    wire_type: answer.getWireType(),
    decrypted_type: answer.getType(),
    decryption_failure: answer.isDecryptionFailure(),
    decryption_failure_reason: answer.decryptionFailureReason ?? null,
    body: answer.getContent().body ?? null,
    replies_to: answer.getWireContent()["m.relates_to"]?.["m.in_reply_to"]?.event_id ?? null,
    shield_colour: info ? EventShieldColour[info.shieldColour] : null,
    shield_reason: info && info.shieldReason !== null ? EventShieldReason[info.shieldReason] : null,
  };
}

async function run(spec) {
  const result = { mode: spec.mode, user_id: spec.user_id, rooms: [], bot_device: null, errors: [] };
  const client = sdk.createClient({
    baseUrl: config.homeserver,
    userId: spec.user_id,
    accessToken: spec.access_token,
    deviceId: spec.device_id,
  });
  try {
    await client.initRustCrypto({ useIndexedDB: false });
    const crypto = client.getCrypto();
    crypto.setDeviceIsolationMode(
      spec.mode === "exclude_insecure"
        ? new OnlySignedDevicesIsolationMode()
        : new AllDevicesIsolationMode(false),
    );
    await client.startClient({ initialSyncLimit: 20, lazyLoadMembers: true });
    await waitForSync(client);
    // Like any Element user today: the user's own cross-signing identity exists (Element makes
    // it at first login). "Exclude insecure devices" refuses to encrypt without it.
    await crypto.bootstrapCrossSigning({
      authUploadDeviceSigningKeys: async (makeRequest) => {
        try {
          await makeRequest(null);
        } catch (error) {
          const session = error?.data?.session;
          if (!session) throw error;
          await makeRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: spec.user_id },
            password: spec.password,
            session,
          });
        }
      },
    });

    for (const kind of spec.kinds ?? ["room", "dm"]) {
      try {
        result.rooms.push(
          await exchange(client, crypto, kind === "dm", spec.mode, Boolean(spec.accept_failure)),
        );
      } catch (error) {
        result.errors.push(`${kind}: ${error.message}`);
      }
    }
    // The bot is now tracked (we share rooms): what does Element show for its device?
    const devices = await crypto.getUserDeviceInfo([config.bot_user_id], true);
    const device = devices.get(config.bot_user_id)?.get(config.bot_device_id);
    const status = await crypto.getDeviceVerificationStatus(config.bot_user_id, config.bot_device_id);
    const identity = await crypto.getUserVerificationStatus(config.bot_user_id);
    result.bot_device = {
      known: Boolean(device),
      ed25519: device?.getFingerprint() ?? null,
      signed_by_owner: status?.signedByOwner ?? null,
      cross_signing_verified: status?.crossSigningVerified ?? null,
      owner_identity_verified_by_user: identity ? identity.isCrossSigningVerified() : null,
    };
  } catch (error) {
    result.errors.push(String(error?.stack ?? error));
  } finally {
    client.stopClient();
  }
  return result;
}

const runs = await Promise.all(config.runs.map(run));
process.stdout.write(`${JSON.stringify({ runs })}\n`);
process.exit(0); // the SDK keeps timers alive after stopClient

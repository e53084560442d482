// The console as the agent's phone: the browser's microphone and speaker
// joined to a live call over WebRTC. The offer goes to the console, which
// hands it to the bot process holding the call and returns its answer.
// Supervisors listen in (and may whisper to the agent alone).
"use strict";

(function () {
  const panel = document.getElementById("voice");
  if (!panel) return;
  const connectUrl = panel.dataset.connect;
  const role = panel.dataset.role;
  const status = document.getElementById("voice-status");
  const connect = document.getElementById("voice-connect");
  const mute = document.getElementById("voice-mute");
  const hold = document.getElementById("voice-hold");
  const whisper = document.getElementById("voice-whisper");
  const audio = document.getElementById("voice-audio");
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrfToken = csrfMeta ? csrfMeta.content : "";
  // ?audio=raw turns the browser's voice processing off (level measurements);
  // a real headset keeps echo cancellation, noise suppression and gain control.
  const raw = new URLSearchParams(window.location.search).get("audio") === "raw";
  // The agent_voice ICE servers (a TURN server for agents outside the LAN);
  // none by default, and never a public STUN server.
  const iceServers = JSON.parse(panel.dataset.ice || "[]");
  const links = {};

  function say(text) {
    status.textContent = text;
  }

  function post(url, fields) {
    const body = new FormData();
    body.append("csrf_token", csrfToken);
    Object.keys(fields).forEach(function (key) {
      body.append(key, fields[key]);
    });
    return fetch(url, { method: "POST", body: body, credentials: "same-origin" });
  }

  function gathered(pc) {
    // The offer travels whole (no trickling): wait for every candidate.
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise(function (resolve) {
      const done = function () {
        if (pc.iceGatheringState === "complete") {
          pc.removeEventListener("icegatheringstatechange", done);
          resolve();
        }
      };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000);
    });
  }

  function microphone() {
    const processing = !raw;
    return navigator.mediaDevices.getUserMedia({
      audio: {
        echoCancellation: processing,
        noiseSuppression: processing,
        autoGainControl: processing,
      },
    });
  }

  async function open(linkRole, sends, hears) {
    const pc = new RTCPeerConnection({ iceServers: iceServers });
    let stream = null;
    if (sends) {
      stream = await microphone();
      stream.getAudioTracks().forEach(function (track) {
        pc.addTrack(track, stream);
      });
      if (!hears) pc.getTransceivers().forEach(function (t) { t.direction = "sendonly"; });
    } else {
      pc.addTransceiver("audio", { direction: "recvonly" });
    }
    if (hears) {
      pc.addEventListener("track", function (event) {
        audio.srcObject = event.streams[0] || new MediaStream([event.track]);
      });
    }
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const response = await post(connectUrl, { sdp: pc.localDescription.sdp, role: linkRole });
    const reply = await response.json();
    if (!response.ok) {
      pc.close();
      if (stream) stream.getTracks().forEach(function (t) { t.stop(); });
      throw new Error(reply.message || "The call's audio could not be connected.");
    }
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    const link = { pc: pc, stream: stream, id: reply.link_id, role: linkRole };
    links[linkRole] = link;
    pc.addEventListener("connectionstatechange", function () {
      if (pc.connectionState === "failed" || pc.connectionState === "disconnected") {
        lost(linkRole, "The connection to the call was lost. The caller is back in line with the bot; take the call again to reconnect.");
      }
    });
    watch(link);
    return link;
  }

  function close(linkRole) {
    const link = links[linkRole];
    if (!link) return;
    delete links[linkRole];
    if (link.stream) link.stream.getTracks().forEach(function (t) { t.stop(); });
    link.pc.close();
  }

  function lost(linkRole, message) {
    if (!links[linkRole]) return;
    close(linkRole);
    say(message);
    connect.disabled = false;
    [mute, hold, whisper].forEach(function (button) { if (button) button.disabled = true; });
  }

  function watch(link) {
    const timer = setInterval(async function () {
      if (links[link.role] !== link) { clearInterval(timer); return; }
      try {
        const response = await fetch(connectUrl + "/" + link.id, { credentials: "same-origin" });
        if (!response.ok) return;
        const state = await response.json();
        if (state.state === "replaced") {
          clearInterval(timer);
          lost(link.role, "This call's audio moved to another tab or window.");
        } else if (state.state === "lost" || state.state === "closed" || state.state === "failed") {
          clearInterval(timer);
          lost(link.role, "The call's audio ended (" + state.state + "). The caller stays safe with the bot.");
        }
      } catch (error) {
        /* the console is unreachable for a moment: the audio may still flow */
      }
    }, 2000);
  }

  function explain(error) {
    if (error && (error.name === "NotAllowedError" || error.name === "SecurityError")) {
      return "Microphone permission was refused. Allow the microphone for this site and press Connect again. The caller stays in line with the bot meanwhile.";
    }
    if (error && error.name === "NotFoundError") {
      return "No microphone was found. Plug in a headset and press Connect again; meanwhile you can type to the caller below.";
    }
    return (error && error.message) || "The call's audio could not be connected.";
  }

  connect.addEventListener("click", async function () {
    connect.disabled = true;
    say("Connecting…");
    try {
      if (role === "agent") {
        await open("agent", true, true);
        say("Connected: you are talking with the caller.");
        mute.disabled = false;
        hold.disabled = false;
      } else {
        await open("monitor", false, true);
        say("Listening in.");
        if (whisper) whisper.disabled = false;
      }
    } catch (error) {
      say(explain(error));
      connect.disabled = false;
    }
  });

  if (mute) {
    mute.addEventListener("click", function () {
      const link = links.agent;
      if (!link || !link.stream) return;
      const muted = mute.getAttribute("aria-pressed") !== "true";
      link.stream.getAudioTracks().forEach(function (t) { t.enabled = !muted; });
      mute.setAttribute("aria-pressed", String(muted));
      mute.textContent = muted ? "Unmute" : "Mute";
      say(muted ? "Muted: the caller cannot hear you." : "Connected: you are talking with the caller.");
    });
  }

  if (hold) {
    hold.addEventListener("click", async function () {
      const holding = hold.getAttribute("aria-pressed") !== "true";
      const response = await post(connectUrl + "/hold", { on_hold: String(holding) });
      if (!response.ok) {
        const reply = await response.json();
        say(reply.message || "The caller could not be put on hold.");
        return;
      }
      hold.setAttribute("aria-pressed", String(holding));
      hold.textContent = holding ? "Take the caller back" : "Hold the caller";
      say(holding ? "On hold: the caller hears the hold music." : "Connected: you are talking with the caller.");
    });
  }

  if (whisper) {
    whisper.addEventListener("click", async function () {
      if (links.whisper) {
        close("whisper");
        whisper.setAttribute("aria-pressed", "false");
        whisper.textContent = "Whisper to the agent";
        say("Listening in.");
        return;
      }
      try {
        await open("whisper", true, false);
        whisper.setAttribute("aria-pressed", "true");
        whisper.textContent = "Stop whispering";
        say("Whispering: only the agent hears you.");
      } catch (error) {
        say(explain(error));
      }
    });
  }

  window.addEventListener("pagehide", function () {
    Object.keys(links).forEach(close);
  });
})();

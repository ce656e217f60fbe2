// megflow-mp live player: fragmented MP4 over one HTTP response, fed to Media Source Extensions.
// The server sends an init segment, then one fragment per frame from a keyframe on. The player
// appends bytes as they arrive, keeps the play position near the newest frame (a little faster when
// behind, a jump when far behind), trims old buffered media, and reconnects when the response ends.
// A 410 (the stream has ended) or 404 (no such stream) is final: the player says so and stops asking;
// anything else (a 504 while no frame comes, a dropped connection) is retried.
"use strict";
var megflowLive = (function () {
  var CHASE = 0.25, JUMP = 1.0, KEEP = 10;

  function concat(parts) {
    var size = 0, i, offset = 0;
    for (i = 0; i < parts.length; i++) size += parts[i].byteLength;
    var out = new Uint8Array(size);
    for (i = 0; i < parts.length; i++) { out.set(parts[i], offset); offset += parts[i].byteLength; }
    return out;
  }

  function chase(video, buffer) {
    var ranges = buffer.buffered;
    if (!ranges.length) return;
    var end = ranges.end(ranges.length - 1), start = ranges.start(ranges.length - 1);
    var lag = end - video.currentTime;
    if (lag > JUMP || video.currentTime < start) video.currentTime = Math.max(start, end - 0.05);
    else video.playbackRate = lag > CHASE ? 1.25 : 1.0;
    if (video.paused) video.play().catch(function () {});
  }

  function Final(message) { this.message = message; }

  function detail(text) {
    try { return JSON.parse(text).detail || text; } catch (e) { return text; }
  }

  function session(video, url, status) {
    return fetch(url, { cache: "no-store" }).then(function (response) {
      if (response.status === 410 || response.status === 404)
        return response.text().then(function (text) { throw new Final(detail(text)); });
      if (!response.ok) return response.text().then(function (text) { throw new Error(response.status + " " + text); });
      var type = response.headers.get("Content-Type");
      if (!window.MediaSource || !MediaSource.isTypeSupported(type)) throw new Error("this browser cannot play " + type);
      var source = new MediaSource();
      video.src = URL.createObjectURL(source);
      return new Promise(function (resolve) { source.addEventListener("sourceopen", resolve, { once: true }); })
        .then(function () {
          var buffer = source.addSourceBuffer(type), pending = [], done = false;
          buffer.mode = "segments";
          function pump() {
            if (buffer.updating || source.readyState !== "open") return;
            var ranges = buffer.buffered;
            if (ranges.length && video.currentTime - ranges.start(0) > 2 * KEEP) {
              buffer.remove(0, video.currentTime - KEEP);
              return;
            }
            if (pending.length) buffer.appendBuffer(concat(pending.splice(0)));
          }
          buffer.addEventListener("updateend", function () { chase(video, buffer); pump(); });
          status.textContent = "playing " + type;
          var reader = response.body.getReader();
          function read() {
            return reader.read().then(function (part) {
              if (part.done) { done = true; return; }
              pending.push(part.value);
              pump();
              return read();
            });
          }
          return read();
        });
    });
  }

  function play(video, url, status) {
    video.muted = true;
    function again(delay) { setTimeout(function () { play(video, url, status); }, delay); }
    session(video, url, status).then(function () {
      status.textContent = "stream ended; reconnecting";
      again(500);  // asks whether it ended for good (410) or goes on (a restart)
    }, function (error) {
      if (error instanceof Final) {
        status.textContent = error.message;
        status.setAttribute("data-state", "ended");
        if (!video.currentSrc) video.style.display = "none";  // no black player for a stream that never showed
        return;
      }
      status.textContent = String(error.message || error) + "; retrying";
      again(2000);
    });
  }

  return { play: play };
})();

// scnn report, video page: click a segment to seek, a cursor follows the video, a slider
// hides detections below a score. Plain JS, inlined: the page works from file:// offline.
(function () {
  "use strict";
  const player = document.getElementById("player");
  const timeline = document.getElementById("timeline");
  const slider = document.getElementById("min-score");
  const sliderValue = document.getElementById("min-score-value");
  const shown = document.getElementById("shown");
  const durationS = Number(timeline.dataset.duration);
  const detections = Array.from(timeline.querySelectorAll(".seg.det"));

  function drawCursor(timeS) {
    const fraction = durationS > 0 ? Math.min(Math.max(timeS / durationS, 0), 1) : 0;
    timeline.style.setProperty("--t", String(fraction));
  }

  function seek(timeS) {
    if (player) {
      player.currentTime = timeS;
    }
    drawCursor(timeS);
  }

  function filter() {
    const minimum = Number(slider.value);
    let visible = 0;
    for (const segment of detections) {
      segment.hidden = Number(segment.dataset.score) < minimum;
      visible += segment.hidden ? 0 : 1;
    }
    sliderValue.textContent = minimum.toFixed(2);
    shown.textContent = visible + " of " + detections.length + " detections shown";
  }

  function follow() {
    drawCursor(player.currentTime);
    if (!player.paused && !player.ended) {
      window.requestAnimationFrame(follow);
    }
  }

  for (const segment of timeline.querySelectorAll(".seg")) {
    segment.addEventListener("click", function () {
      seek(Number(segment.dataset.start));
    });
  }
  slider.addEventListener("input", filter);
  if (player) {
    player.addEventListener("timeupdate", follow);
    player.addEventListener("seeked", follow);
    player.addEventListener("play", follow);
  }
  filter();
  drawCursor(0);
})();

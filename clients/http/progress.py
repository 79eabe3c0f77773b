"""Progress on a terminal: curl's meter, or its bar (``-#``), one line per transfer.

A transfer gets a line once it has lasted :data:`AFTER` seconds (short transfers never
draw); lines are redrawn in place (ANSI "cursor to previous line" and "erase line") when the
program calls :meth:`ProgressDisplay.tick` and when a transfer ends.  Nothing is written unless
the display is enabled (the command line enables it for a terminal only).  The meter's
columns are curl's: percent and size of the total, of what was received and of what was sent,
average download and upload speeds, total/spent/left time and the current speed.
"""
import collections
import shutil
import time

__all__ = ["ProgressDisplay", "size5", "time8", "meter_line", "bar_line", "METER_HEAD",
           "AFTER"]

AFTER = 1.0
METER_HEAD = ("  % Total    % Received % Xferd  Average Speed   Time    Time     Time  Current\n"
              "                                 Dload  Upload   Total   Spent    Left  Speed\n")
_KIB, _MIB, _GIB, _TIB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
SPEED_WINDOW = 5.0          # seconds of samples behind the "Current Speed" column


def size5(n):
    """A byte count in five characters, as curl's meter shows it: 99999, 9999k, 99.9M..."""
    n = int(n)
    if n < 100000:
        return "%5d" % n
    if n < 10000 * _KIB:
        return "%4dk" % (n // _KIB)
    if n < 100 * _MIB:
        return "%2d.%dM" % (n // _MIB, (n % _MIB) // (_MIB // 10))
    if n < 10000 * _MIB:
        return "%4dM" % (n // _MIB)
    if n < 100 * _GIB:
        return "%2d.%dG" % (n // _GIB, (n % _GIB) // (_GIB // 10))
    if n < 10000 * _GIB:
        return "%4dG" % (n // _GIB)
    if n < 10000 * _TIB:
        return "%4dT" % (n // _TIB)
    return "%4dP" % min(n // (_TIB * 1024), 9999)


def time8(seconds):
    """A duration in eight characters: ``H:MM:SS``, days and hours when long, dashes when
    unknown or zero."""
    if seconds is None or seconds != seconds or seconds <= 0 or seconds > 1e12:
        return "--:--:--"
    seconds = int(seconds)
    if not seconds:
        return "--:--:--"
    if seconds < 100 * 3600:
        return "%2d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)
    days = seconds // 86400
    if days < 1000:
        return "%3dd %02dh" % (days, seconds // 3600 % 24)
    return "%7dd" % days


def _percent(done, total):
    return min(100, done * 100 // total) if total else 0


def meter_line(down_total, down, up_total, up, elapsed, current):
    """One line of curl's meter (78 characters)."""
    # An unknown total counts as what has come so far (as curl shows it: 100% of that).
    whole = (down if down_total is None else down_total) + (up if up_total is None else up_total)
    done = down + up
    rate_down = down / elapsed if elapsed > 0 else 0
    rate_up = up / elapsed if elapsed > 0 else 0
    rate = rate_down + rate_up
    known = (down_total or 0) + (up_total or 0)
    estimate = whole / rate if known and rate else None
    left = estimate - elapsed if estimate is not None else None
    return "%3d %s  %3d %s  %3d %s  %s  %s %s %s %s %s" % (
        _percent(done, whole), size5(whole), _percent(down, down_total), size5(down),
        _percent(up, up_total), size5(up), size5(rate_down), size5(rate_up),
        time8(estimate), time8(elapsed), time8(left), size5(current))


def bar_line(fraction, width, tick=0):
    """curl's ``-#`` bar: hashes and the percentage in ``width - 1`` columns (the cursor must
    not wrap); without a known total (``fraction`` None), a marker bouncing along the line."""
    room = max(width - 8, 10)
    if fraction is None:
        span = room - 5
        position = tick % (2 * span) if span > 0 else 0
        if position > span:
            position = 2 * span - position
        return (" " * position + "#=#=#").ljust(room + 7)
    fraction = min(max(fraction, 0.0), 1.0)
    return "%s %5.1f%%" % (("#" * int(fraction * room)).ljust(room), fraction * 100)


class Meter:
    """One transfer's counters; the command line calls :meth:`expect` when it learns the sizes,
    :meth:`update` as bytes move and :meth:`finish` at the end."""

    def __init__(self, display):
        self.display = display
        self.started = display.clock()
        self.ended = None
        self.down_total = None
        self.up_total = None
        self.down = 0
        self.up = 0
        self.visible = False
        self._samples = collections.deque([(self.started, 0)])

    def expect(self, down_total=None, up_total=None):
        if down_total is not None:
            self.down_total = down_total
        if up_total is not None:
            self.up_total = up_total

    def update(self, down=None, up=None):
        if down is not None:
            self.down = down
        if up is not None:
            self.up = up

    def restart(self):
        """A new attempt (a retry, a restarted resume): the counts start over."""
        self.down = self.up = 0
        self.down_total = self.up_total = None

    def finish(self):
        if self.ended is None:
            self.ended = self.display.clock()
            self.display.render()

    def elapsed(self):
        return (self.ended if self.ended is not None else self.display.clock()) - self.started

    def current_speed(self):
        now = self.ended if self.ended is not None else self.display.clock()
        samples = self._samples
        total = self.down + self.up
        samples.append((now, total))
        while len(samples) > 2 and now - samples[1][0] >= SPEED_WINDOW:
            samples.popleft()
        then, before = samples[0]
        return (total - before) / (now - then) if now > then else 0

    def line(self, style, width, tick):
        if style == "bar":
            total = (self.down_total or 0) + (self.up_total or 0)
            done = self.down + self.up
            if self.ended is not None and not total:
                return bar_line(1.0, width)
            return bar_line(done / total if total else None, width, tick)
        return meter_line(self.down_total, self.down, self.up_total, self.up, self.elapsed(),
                          self.current_speed())


class ProgressDisplay:
    """The lines of every transfer that has lasted over ``after`` seconds, on ``stream``
    (``style`` "meter" or "bar"); a disabled display writes nothing."""

    def __init__(self, stream, style="meter", *, enabled=True, clock=time.monotonic,
                 after=AFTER, columns=None):
        self.stream = stream
        self.style = style
        self.enabled = enabled
        self.clock = clock
        self.after = after
        self.columns = columns
        self.meters = []
        self._drawn = 0
        self._ticks = 0

    def add(self):
        meter = Meter(self)
        self.meters.append(meter)
        return meter

    @property
    def active(self):
        return any(meter.ended is None for meter in self.meters)

    def tick(self):
        self._ticks += 1
        self.render()

    def _width(self):
        return self.columns or shutil.get_terminal_size((80, 24)).columns

    def _lines(self):
        width = self._width()
        lines = []
        for meter in self.meters:
            if not meter.visible and meter.elapsed() > self.after:
                meter.visible = True
            if meter.visible:
                lines.append(meter.line(self.style, width, self._ticks)[:max(width - 1, 20)])
        return lines

    def render(self, above=""):
        """Redraw the lines (first writing ``above``, text that scrolls up above them)."""
        if not self.enabled:
            if above:
                self._write(above)
            return
        lines = self._lines()
        if lines and self.style == "meter":
            lines = METER_HEAD.splitlines() + lines
        out = []
        if self._drawn:
            # Back to the first line drawn, and erase from there down.
            out.append("\x1b[%dF\x1b[J" % self._drawn)
        out.append(above)
        out.extend(line + "\n" for line in lines)
        self._drawn = len(lines)
        if lines or above:
            self._write("".join(out))

    def _write(self, text):
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False

    def write_above(self, text):
        """Text for the stream (a trace line, an error) that must not break the lines."""
        if self._drawn:
            self.render(above=text)
        else:
            self._write(text)

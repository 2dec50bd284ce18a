"""The channels pane: `account:deposit` and `account:withdraw` as the stream stores them."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from dashboard.ui.view import CHANNELS, LabView

BARS = "▁▂▃▄▅▆▇█"
USERS_SHOWN = 12


def sparkline(rates: list[float], top: float) -> str:
    if top <= 0:
        return BARS[0] * len(rates)
    return "".join(BARS[min(len(BARS) - 1, round(rate / top * (len(BARS) - 1)))] for rate in rates)


class ChannelsPane(Static):
    """Stored messages, last stream sequence, messages per user and a rate sparkline per channel."""

    def on_mount(self) -> None:
        self.border_title = "Channels"
        self.border_subtitle = "h history"

    def show(self, view: LabView) -> None:
        top = max((max(channel.rates) for channel in view.channels.values()), default=0.0)
        lines: list[Text] = []
        for name in CHANNELS:
            channel = view.channels.get(name)
            header = Text(no_wrap=True, overflow="ellipsis")
            header.append(f"{name:<17}", "bold")
            if channel is None:
                header.append("waiting for the stream…", "dim")
                lines += [header, Text(""), Text("")]
                continue
            stats = channel.stats
            rate = channel.rates[-1]
            header.append(f"stored {stats.messages} · last seq {stats.last_seq or '-'}")
            users = Text("  ", no_wrap=True, overflow="ellipsis")
            if stats.per_user:
                # Only as many users as a line can show: with thousands of users, building them all
                # twice a second was a tenth of the dashboard's time.
                shown = sorted(stats.per_user.items())[:USERS_SHOWN]
                for index, (user, count) in enumerate(shown):
                    if index:
                        users.append(" · ", "dim")
                    users.append(user)  # from the network: a Text, never markup
                    users.append(f" {count}", "bold")
                if len(stats.per_user) > len(shown):
                    users.append(f" · +{len(stats.per_user) - len(shown)} more (h)", "dim")
            else:
                users.append("no events yet", "dim")
            spark = Text(no_wrap=True, overflow="crop")
            spark.append(f"{rate:5.1f}/s ", "cyan" if rate else "dim")
            spark.append(sparkline(list(channel.rates), top), "cyan")
            lines += [header, users, spark]
        self.update(Group(*lines), layout=False)  # always two channels, three lines each

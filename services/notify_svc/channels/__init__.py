"""Channel adapters: one per provider (Aliyun SMS, Tencent SMS, WeChat, console), all behind ``Provider``."""

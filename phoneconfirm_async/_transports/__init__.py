"""The transports: the seam, the bound around a given one, httpx, aiohttp, the choice."""

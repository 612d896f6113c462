-- Market regulation administration: enterprise registrations.
-- Habits: the 15-digit registration number (注册号) is the key, the unified social
-- credit code (USCC) was added later and is '' for enterprises never re-issued;
-- names with full-width brackets （）; dates as 'YYYY-MM-DD' text; status in Chinese.

CREATE TABLE qy_djxx (                    -- 企业登记信息
    zch       varchar(15) PRIMARY KEY,      -- 注册号
    tyshxydm  varchar(18),                  -- 统一社会信用代码
    qymc      varchar(200) NOT NULL,        -- 企业名称
    qylx      varchar(40),                  -- 企业类型
    fddbr     varchar(50),                  -- 法定代表人
    fddbrzjhm varchar(24),                  -- 法定代表人证件号码
    zczb      numeric(16,2),                -- 注册资本 (万元)
    clrq      varchar(10),                  -- 成立日期 YYYY-MM-DD
    djzt      varchar(8) NOT NULL,          -- 登记状态 存续 / 注销 / 吊销
    zxrq      varchar(10),                  -- 注销日期
    zs        varchar(200),                 -- 住所
    gxsj      timestamp NOT NULL DEFAULT localtimestamp(0)
);
ALTER TABLE qy_djxx REPLICA IDENTITY FULL;
